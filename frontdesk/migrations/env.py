"""Alembic environment: runs on the connection handed over by `frontdesk.migrate`."""

from __future__ import annotations

from alembic import context

from frontdesk.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `frontdesk migrate`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
