"""Event ingestion: purchases and returns, idempotent by event id."""
