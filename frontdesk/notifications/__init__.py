"""Operator notifications (I4): events an operator asked to hear about, in the dashboard and by
email, immediately or as a digest, outside their quiet hours."""
