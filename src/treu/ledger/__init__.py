"""The points ledger: append-only postings, lots, cached balances."""
