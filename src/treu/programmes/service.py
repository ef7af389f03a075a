from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from treu.kit.time import add_months, end_of_year, local_date
from treu.programmes.errors import ProgrammeExists, ProgrammeNotFound
from treu.programmes.models import ExpiryPolicy, Programme, TierMetric, TierWindow
from treu.programmes.schemas import (
    DEFAULT_POINTS_NAME,
    Expiry,
    ProgrammeCreate,
    ProgrammeOut,
    TierSettings,
)

CACHE_SECONDS = 5.0


class ProgrammeService:
    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[float, Programme]] = {}

    def create(self, session: Session, *, data: ProgrammeCreate) -> Programme:
        if session.scalar(select(Programme.id).where(Programme.slug == data.slug)) is not None:
            raise ProgrammeExists(f"a programme with slug {data.slug!r} exists already")
        names: dict[str, Any] = {k: dict(v) for k, v in DEFAULT_POINTS_NAME.items()}
        for lang, name in (data.points_name or {}).items():
            names[lang] = name if isinstance(name, str) else name.model_dump()
        programme = Programme(
            slug=data.slug,
            name=data.name,
            currency=data.currency,
            timezone=data.timezone,
            points_name=names,
            points_per_currency_unit=data.points_per_currency_unit,
            rounding=data.rounding.value,
            rounding_scope=data.rounding_scope.value,
            point_value_minor=data.point_value_minor,
            pending_days=data.pending_days,
            expiry_policy=data.expiry.policy.value,
            expiry_months=data.expiry.months,
            expiry_years=data.expiry.years,
            auto_enrol=data.auto_enrol,
            multiplier_stacking=data.multiplier_stacking,
            tier_metric=data.tier_settings.metric.value,
            tier_window=data.tier_settings.window.value,
            tier_grace_days=data.tier_settings.grace_days,
            tier_max_drop=data.tier_settings.max_drop,
        )
        session.add(programme)
        session.flush()
        return programme

    def get(self, session: Session, ref: str | uuid.UUID) -> Programme:
        """By id or slug."""
        programme: Programme | None
        if isinstance(ref, uuid.UUID):
            programme = session.get(Programme, ref)
        else:
            try:
                programme = session.get(Programme, uuid.UUID(ref))
            except ValueError:
                programme = session.scalar(select(Programme).where(Programme.slug == ref))
        if programme is None:
            raise ProgrammeNotFound(f"no programme {str(ref)!r}")
        return programme

    def get_many_by_slug(self, session: Session, slugs: set[str]) -> dict[str, Programme]:
        if not slugs:
            return {}
        rows = session.scalars(select(Programme).where(Programme.slug.in_(slugs)))
        return {p.slug: p for p in rows}

    def cached_by_slug(self, session: Session, slugs: set[str]) -> dict[str, Programme]:
        """Like ``get_many_by_slug``, from a per-process cache kept ``CACHE_SECONDS``.

        Every event names its programme; reading it from the database each time cost
        about a fifth of a single purchase's ingestion. Programmes change rarely, and a
        change is seen by every process within ``CACHE_SECONDS``. Cached objects are
        detached, fully loaded and only read."""
        database = str(session.get_bind().engine.url)
        now = time.monotonic()
        found: dict[str, Programme] = {}
        missing: set[str] = set()
        for slug in slugs:
            hit = self._cache.get((database, slug))
            if hit is not None and hit[0] > now:
                found[slug] = hit[1]
            else:
                missing.add(slug)
        if missing:
            for slug, programme in self.get_many_by_slug(session, missing).items():
                session.expunge(programme)
                self._cache[(database, slug)] = (now + CACHE_SECONDS, programme)
                found[slug] = programme
        return found

    def invalidate(self, session: Session, slug: str) -> None:
        """Forget a cached programme (its settings changed in this process)."""
        self._cache.pop((str(session.get_bind().engine.url), slug), None)

    def all(self, session: Session) -> list[Programme]:
        return list(session.scalars(select(Programme).order_by(Programme.slug)))

    def out(self, programme: Programme) -> ProgrammeOut:
        return ProgrammeOut(
            id=programme.id,
            slug=programme.slug,
            name=programme.name,
            currency=programme.currency,
            timezone=programme.timezone,
            points_name=programme.points_name,
            points_per_currency_unit=programme.points_per_currency_unit,
            rounding=programme.rounding,
            rounding_scope=programme.rounding_scope,
            point_value_minor=programme.point_value_minor,
            pending_days=programme.pending_days,
            expiry=Expiry(
                policy=ExpiryPolicy(programme.expiry_policy),
                months=programme.expiry_months,
                years=programme.expiry_years,
            ),
            auto_enrol=programme.auto_enrol,
            multiplier_stacking=programme.multiplier_stacking,
            tier_settings=self.tier_settings(programme),
            created_at=programme.created_at,
        )

    def tier_settings(self, programme: Programme) -> TierSettings:
        return TierSettings(
            metric=TierMetric(programme.tier_metric),
            window=TierWindow(programme.tier_window),
            grace_days=programme.tier_grace_days,
            max_drop=programme.tier_max_drop,
        )

    # --- programme maths (pure) -------------------------------------------------------

    def available_at(self, programme: Programme, earned_at: datetime) -> datetime:
        """Points stay pending until the return window (``pending_days``) has passed."""
        return earned_at + timedelta(days=programme.pending_days)

    def expires_at(self, programme: Programme, earned_at: datetime) -> datetime | None:
        policy = ExpiryPolicy(programme.expiry_policy)
        if policy is ExpiryPolicy.rolling:
            return add_months(earned_at, programme.expiry_months or 0)
        if policy is ExpiryPolicy.fixed:
            year = local_date(earned_at, programme.timezone).year
            return end_of_year(year + (programme.expiry_years or 0), programme.timezone)
        return None


programmes = ProgrammeService()
