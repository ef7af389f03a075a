"""Audit log: who did what to which aggregate, and why."""
