"""Built-in strategies, one per file; each uses only the public plugin contract."""
