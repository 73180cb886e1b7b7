"""Queries: every read. `access_*` loaders apply permissions and raise `not_found` otherwise."""
