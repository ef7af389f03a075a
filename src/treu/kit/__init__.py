"""Framework-free helpers shared by every layer: money, time, ids, pagination."""
