"""Events: types, recording inside a transaction, and publication after commit."""
