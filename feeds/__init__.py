"""Market data in: Parquet history and its validation, import, the synthetic market, the
ZeroMQ wire and transport. Stands on the engine's contracts alone."""
