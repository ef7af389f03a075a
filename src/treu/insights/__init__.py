"""Insights: what the programme's data says (the dashboard now; segments, RFM, lifetime value,
churn and next-best offers next). Reads only; whatever it produces is saved through a
domain service."""
