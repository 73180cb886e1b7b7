"""Durable jobs: the queue (enqueued in the caller's transaction, claimed under leases) and the
worker that runs them."""
