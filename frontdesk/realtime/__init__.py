"""Real-time fan-out: the broker protocol and its implementations."""
