"""The rewards services: the catalogue (``treu.rewards.catalogue``) and redemptions
(``treu.rewards.redemption``; cancelling and expiry: ``treu.rewards.reversal``); who may
redeem what is ``treu.rewards.eligibility``."""

from __future__ import annotations

from treu.rewards.catalogue import catalogue
from treu.rewards.redemption import redemptions

__all__ = ["catalogue", "redemptions"]
