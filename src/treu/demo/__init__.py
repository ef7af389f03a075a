"""Demo programme with realistic data (``treu demo``).

The data is meant to look like a German grocery-and-lifestyle retailer's first year of
loyalty data, because the insights built on it (RFM, CLV, churn, recommendations) are
only as convincing as its shape:

* members fall into segments with very different purchase rates: a few heavy buyers,
  regulars, many occasional shoppers, lapsed members who stopped months ago, and fresh
  sign-ups; each has a home store, a channel mix (POS, web, app, a little phone) and a
  taste for organic products of their own;
* purchases spread over the last 12 months, baskets depend on the channel (groceries at
  the till, apparel and cosmetics online) and use one product catalogue (sku, name,
  category, price, tags such as ``organic``);
* about 3 % of orders come back, some in part, some in full (online orders more often).

Everything derives from one ``random.Random(seed)`` and ``now``: the same seed and ``now``
give the same members and events. Loading goes through the services (``members.enrol``,
the bulk event ingestion in batches of 1,000), so the ledger it builds is the real one.
"""

from __future__ import annotations

from treu.demo.catalogue import CATALOGUE, STORES
from treu.demo.generate import generate
from treu.demo.load import DemoSummary, demo_exists, load_demo, sample_member
from treu.demo.programme import DEMO_SLUG

__all__ = [
    "CATALOGUE",
    "DEMO_SLUG",
    "STORES",
    "DemoSummary",
    "demo_exists",
    "generate",
    "load_demo",
    "sample_member",
]
