"""Insights: the trained models of a programme, each version with its metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from treu.api.deps import DB, Admin
from treu.api.problems import PROBLEM_RESPONSES, Problem
from treu.kit.time import iso
from treu.programmes.service import programmes
from treu.segments.models import InsightKind
from treu.segments.models_registry import list_models
from treu.web.routing import Router

router = Router(tags=["insights"], responses=PROBLEM_RESPONSES)


class InsightModelOut(BaseModel):
    id: str
    kind: str = Field(examples=["clv"])
    version: int = Field(description="1, 2, … per programme and kind", examples=[3])
    trained_at: str = Field(examples=["2026-12-07T02:00:12Z"])
    metrics: dict[str, Any] = Field(
        examples=[{"customers": 1000000, "bgnbd_log_likelihood": -1.2e7}]
    )
    params: dict[str, Any]


class InsightModelsOut(BaseModel):
    programme: str
    models: list[InsightModelOut] = Field(description="By kind, newest version first")


@router.get(
    "/v1/insights/models",
    response_model=InsightModelsOut,
    responses={404: {"model": Problem, "description": "No such programme"}},
)
def get_insight_models(
    db: DB,
    _key: Admin,
    programme: Annotated[str, Query(description="The programme's slug or id")],
    kind: Annotated[InsightKind | None, Query(description="Only this kind of model")] = None,
) -> InsightModelsOut:
    """Every trained version of the programme's insight models (lifetime value, churn,
    RFM, personas, recommendations) with its metrics and parameters, as ``treu insights
    train`` and the nightly job ``insights.train`` recorded them."""
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        rows = list_models(
            session, programme_id=found.id, kind=kind.value if kind is not None else None
        )
        return InsightModelsOut(
            programme=found.slug,
            models=[
                InsightModelOut(
                    id=str(m.id),
                    kind=m.kind,
                    version=m.version,
                    trained_at=iso(m.trained_at),
                    metrics=m.metrics,
                    params=m.params,
                )
                for m in rows
            ],
        )
