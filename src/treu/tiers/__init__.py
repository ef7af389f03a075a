"""Tiers: qualification, upgrades and downgrades, paid membership, tier benefits."""
