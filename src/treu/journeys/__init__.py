"""Triggered journeys: welcome, first purchase, birthday, inactivity, points expiring,
tier upgrade, tier at risk, thank-you (docs/journeys.md)."""
