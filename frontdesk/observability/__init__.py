"""Observability: what FrontDesk tells operators about itself (Prometheus metrics, traces)."""
