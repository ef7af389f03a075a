"""Treu: an open-source, self-hosted loyalty platform."""

__version__ = "0.1.0"
