"""Campaigns record who was in their experiment: the exposures.

The campaign's points come from its earning rule, like any rule's; what this reaction
adds is the record of the arms. For each processed event of a member that falls in a
running campaign's window while its audience holds the member, it records the member's
arm (``treated`` or ``held_out``, the same stable hash the rule's condition uses) once per
member and campaign, with the event and when it occurred. Held-out members are recorded
exactly like treated ones, which is what makes the two arms comparable.

A campaign whose budget is spent has stopped: its rule gives nothing more, and members
seen after that are not recorded (the budget is read once per unit of work, after the
ingest has locked the budgeted rules, and followed through the batch's own awards).
Returns and blocked members' events record nothing.

Cost: while a programme runs no campaign, a dictionary look-up per unit of work (the
running campaigns are cached per process, ``treu.campaigns.service``); with campaigns, a
few comparisons and a hash per event and campaign, and one ``INSERT … ON CONFLICT DO
NOTHING`` per unit of work (a member seen before keeps the arm and time recorded first).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from treu.campaigns.models import CampaignExposure
from treu.campaigns.service import LiveCampaign, campaigns
from treu.db.base import WriteBatch, table_of
from treu.events.schemas import AnyEvent, ReturnEvent
from treu.events.seam import IngestRun, Item, ReactionRun
from treu.programmes.models import Programme
from treu.rules.models import Rule

_TABLE = table_of(CampaignExposure)


class CampaignReaction:
    name = "campaigns"

    def validate(self, session: Session, event: AnyEvent, programme: Programme) -> None:
        return None

    def start(self, run: IngestRun) -> ReactionRun:
        live: dict[uuid.UUID, tuple[LiveCampaign, ...]] = {}
        for _, _, programme in run.open():
            if programme.id not in live:
                live[programme.id] = campaigns.live(run.session, programme)
        if not any(live.values()):
            return _NOTHING
        budgeted = [c.rule_id for found in live.values() for c in found if c.budget is not None]
        used: dict[str, int] = {}
        if budgeted:
            rows = run.session.execute(
                select(Rule.id, Rule.budget_used).where(
                    Rule.id.in_([uuid.UUID(r) for r in budgeted])
                )
            )
            used = {str(rule_id): int(spent) for rule_id, spent in rows}
        return _Exposures(run, live, used)


_NOTHING = ReactionRun()


class _Exposures(ReactionRun):
    def __init__(
        self,
        run: IngestRun,
        live: dict[uuid.UUID, tuple[LiveCampaign, ...]],
        used: dict[str, int],
    ) -> None:
        self.run = run
        self.live = live
        self.used = used
        self.seen: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.rows: list[dict[str, Any]] = []

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
        awards: dict[str, Any] = row["data"].get("awards") or {}
        for campaign in found:
            if not campaign.starts_at <= at < campaign.ends_at:
                continue
            if (
                campaign.budget is not None
                and self.used.get(campaign.rule_id, 0) >= campaign.budget
            ):
                continue
            key = (campaign.id, member.id)
            if key not in self.seen:
                if campaign.tiers is not None and not tier_known:
                    books = self.run.tiers
                    tier, tier_known = (books.tier_of(member.id) if books else None), True
                if not campaign.holds(member.id, tier):
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
            if campaign.budget is not None:
                self.used[campaign.rule_id] = self.used.get(campaign.rule_id, 0) + int(
                    awards.get(campaign.rule_id, 0)
                )

    def flush(self, batch: WriteBatch) -> None:
        if not self.rows:
            return
        connection = self.run.session.connection()
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(_TABLE).on_conflict_do_nothing(
            index_elements=["campaign_id", "member_id"]
        )
        connection.execute(statement, self.rows)
        self.rows = []
