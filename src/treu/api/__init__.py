"""The HTTP API (FastAPI). Handlers own the transaction and call domain services."""
