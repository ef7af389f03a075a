"""Programmes: currency, earn rate, pending period and expiry policy."""
