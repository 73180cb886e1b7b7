"""The knowledge base: reading documents, chunking them, and lexical retrieval."""
