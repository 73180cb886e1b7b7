"""The widget HTTP API (`/api/widget/v1`), as in the public contract."""
