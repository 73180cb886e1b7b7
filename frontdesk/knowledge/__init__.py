"""The knowledge base: reading documents (text, Markdown, HTML, PDF), chunking them, embedding
them, the pure parts of retrieval (the vector index, rank fusion), and the `knowledge.ingest` job
that takes an upload through all of that (`ingestion`, and `local_files` for `kb add`); the SQL
of retrieval is in `frontdesk.queries.knowledge`, the changes in `frontdesk.actions`."""
