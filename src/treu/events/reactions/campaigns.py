"""Campaigns record who was in their experiment: the exposures.

The campaign's points come from its earning rule, like any rule's; what this reaction
adds is the record of the arms. For each processed event of a member that falls in a
running campaign's window while its audience holds the member, it records the member's
arm (``treated`` or ``held_out``, the same stable hash the rule's condition uses) once per
member and campaign, with the event and when it occurred. Held-out members are recorded
exactly like treated ones, which is what makes the two arms comparable.

A campaign whose budget is spent has stopped: its rule gives nothing more, and members
seen after that are not recorded. This process learns it from the event the budget
capped or stopped (the answer's ``limited``: only its budget limits a campaign's rule),
other processes within ``CACHE_SECONDS`` (``treu.campaigns.service``: the cache's stamp
query compares budget and budget used). Returns and blocked members' events record
nothing.

Cost: while a programme runs no campaign, a dictionary look-up per unit of work (the
running campaigns are cached per process, ``treu.campaigns.service``); with campaigns, a
few comparisons and a hash per event and campaign, and one ``INSERT … ON CONFLICT DO
NOTHING`` per unit of work (a member seen before keeps the arm and time recorded first).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from treu.campaigns.models import CampaignExposure
from treu.campaigns.service import LiveCampaign, campaigns
from treu.db.base import WriteBatch, table_of
from treu.events.schemas import AnyEvent, ReturnEvent
from treu.events.seam import IngestRun, Item, ReactionRun
from treu.programmes.models import Programme
from treu.segments.membership import slugs_of_many

_TABLE = table_of(CampaignExposure)


class CampaignReaction:
    name = "campaigns"

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        return None

    def start(self, run: IngestRun) -> ReactionRun:
        live = {  # the unit of work's programmes, not its events: a few, not a thousand
            programme.id: campaigns.live(run.session, programme)
            for programme in run.programmes.values()
        }
        if not any(live.values()):
            return _NOTHING
        return _Exposures(run, live)


_NOTHING = ReactionRun()


class _Exposures(ReactionRun):
    def __init__(self, run: IngestRun, live: dict[uuid.UUID, tuple[LiveCampaign, ...]]) -> None:
        self.run = run
        self.live = live
        self.seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.spent: set[uuid.UUID] = set()
        self.rows: list[dict[str, Any]] = []
        self.segments: dict[uuid.UUID, frozenset[str]] | None = None
        """The run's members' segments, read (one query) at the first campaign with a
        segment audience."""

    def member_segments(self, member_id: uuid.UUID) -> frozenset[str]:
        if self.segments is None:
            ids = {m.id for m in self.run.members.values() if m is not None}
            self.segments = slugs_of_many(self.run.session, member_ids=ids)
        return self.segments.get(member_id, frozenset())

    def react(self, item: Item) -> None:
        row, member = item.row, item.member
        if member is None or row is None or isinstance(item.event, ReturnEvent):
            return
        found = self.live.get(item.programme.id)
        if not found or row["data"].get("blocked"):
            return
        at = item.event.occurred_at
        tier: str | None = None
        tier_known = False
        limited = item.answer.limited if item.answer is not None else ()
        for campaign in found:
            key = (campaign.id, member.id)
            if not campaign.starts_at <= at < campaign.ends_at or campaign.id in self.spent:
                continue
            if any(entry.rule_id == campaign.rule_id for entry in limited):
                # Only its budget limits a campaign's rule: spent now (capped: this member
                # still got the rest) or before (nothing given).
                self.spent.add(campaign.id)
                campaigns.invalidate(item.programme.id)
                if campaign.rule_id not in (row["data"].get("awards") or {}):
                    continue
            if key in self.seen:
                continue
            if campaign.tiers is not None and not tier_known:
                books = self.run.tiers
                tier, tier_known = (books.tier_of(member.id) if books else None), True
            segments = (
                self.member_segments(member.id) if campaign.segments is not None else frozenset()
            )
            if not campaign.holds(member.id, tier, segments):
                continue
            self.seen.add(key)
            self.rows.append(
                {
                    "campaign_id": campaign.id,
                    "member_id": member.id,
                    "programme_id": item.programme.id,
                    "arm": campaign.arm(member.id).value,
                    "first_seen_at": at,
                    "event_id": row["id"],
                    "recorded_at": self.run.now,
                }
            )

    def flush(self, batch: WriteBatch) -> None:
        # With the unit's other writes (one round trip); a member seen before keeps the
        # row written then.
        batch.insert(_TABLE, self.rows, skip_existing=True)
        self.rows = []
