"""HTTP surface: routers parse and authorise, call one action or query, and shape the response."""
