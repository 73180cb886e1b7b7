"""Outbound webhooks: Standard Webhooks signing, the SSRF guard, fan-out and delivery."""
