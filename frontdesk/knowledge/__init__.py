"""The knowledge base: reading documents (text, Markdown, HTML, PDF), chunking them, embedding
them, and the pure parts of retrieval (the vector index, rank fusion); the SQL is in
`frontdesk.queries.knowledge`."""
