"""Challenges: goals over a window, progress per member from events, points and badges on
completion."""
