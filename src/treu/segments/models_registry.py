"""The registry of trained insight models: each training of a programme's model of one
kind is kept as the next version, with its metrics and parameters, so that a worse model
can be noticed (and the previous one compared or restored)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from treu.kit.time import utc_now
from treu.segments.models import InsightKind, InsightModel


def record_model(
    session: Session,
    *,
    programme_id: uuid.UUID,
    kind: str,
    metrics: Mapping[str, Any],
    params: Mapping[str, Any],
    artifact: bytes | None = None,
    trained_at: datetime | None = None,
) -> InsightModel:
    """Store a newly trained model as the next version of its kind (1 for the first).
    Two trainings racing for the same version: the second fails on the unique key."""
    InsightKind(kind)  # ValueError for an unknown kind
    latest = session.scalar(
        select(func.max(InsightModel.version)).where(
            InsightModel.programme_id == programme_id, InsightModel.kind == kind
        )
    )
    model = InsightModel(
        programme_id=programme_id,
        kind=kind,
        version=(latest or 0) + 1,
        trained_at=trained_at or utc_now(),
        metrics=dict(metrics),
        params=dict(params),
        artifact=artifact,
    )
    session.add(model)
    session.flush()
    return model


def list_models(
    session: Session, *, programme_id: uuid.UUID, kind: str | None = None
) -> list[InsightModel]:
    """The programme's models, by kind, newest version first."""
    query = select(InsightModel).where(InsightModel.programme_id == programme_id)
    if kind is not None:
        query = query.where(InsightModel.kind == kind)
    return list(session.scalars(query.order_by(InsightModel.kind, InsightModel.version.desc())))


def latest_model(session: Session, *, programme_id: uuid.UUID, kind: str) -> InsightModel | None:
    return session.scalar(
        select(InsightModel)
        .where(InsightModel.programme_id == programme_id, InsightModel.kind == kind)
        .order_by(InsightModel.version.desc())
        .limit(1)
    )
