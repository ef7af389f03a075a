"""Database plumbing: model base, types, engine and unit of work."""
