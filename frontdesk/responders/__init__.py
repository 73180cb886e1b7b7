"""Responders: what answers a visitor. One protocol (`Responder`), several implementations."""
