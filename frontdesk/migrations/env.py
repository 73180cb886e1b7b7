"""Alembic environment: runs on the connection handed over by `frontdesk.migrate`."""

from __future__ import annotations

from alembic import context

from frontdesk.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `frontdesk migrate`")

# Full-text search structures are made by hand in the migrations (FTS5 tables on SQLite, a
# generated tsvector column on PostgreSQL); autogenerate must not try to drop them.
HAND_MADE = ("knowledge_chunks_fts", "search_vector", "ix_knowledge_chunks_search")


def include_name(name: str | None, type_: str, _: object) -> bool:
    return not (name or "").startswith(HAND_MADE)


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    include_name=include_name,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
