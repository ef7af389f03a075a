"""Segments and per-member scores: the tables insights write and features read.

The tables (``member_scores``, ``segments``, ``segment_members``, ``segment_changes``,
``insight_models``) and the small services around them live here, below ``treu.rules``,
so that rule conditions, reward eligibility and audiences can read memberships without
importing the insights package (which computes them and sits above every domain
package)."""
