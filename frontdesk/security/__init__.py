"""Security primitives: keys, tokens, origins, identity proofs, passwords and API keys."""
