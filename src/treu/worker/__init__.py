"""Background worker: runs the scheduled jobs (pending activation, expiry)."""
