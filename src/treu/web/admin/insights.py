"""The console's insights page: the personas of a programme (sizes and profiles as charts,
each described in the reader's language) and the latest version of every trained model
with its main figures. Read-only, for every role that reads the dashboard (analysts
included); ``treu insights train`` and the nightly job fill it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from treu.kit.text import N_, translate
from treu.programmes.models import Programme
from treu.segments.models import InsightModel
from treu.segments.models_registry import latest_model, list_models
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.charts import Series, bar_chart
from treu.web.nav import ADMIN
from treu.web.render import language, render, translate_for

ADMIN.link("/admin/insights", N_("Insights"), order=25, permission="dashboard.read")

SHARES = (
    ("organic", N_("organic")),
    ("app", N_("app")),
    ("web", N_("online")),
    ("pos", N_("in store")),
)


def _described(persona: dict[str, Any], lang: str) -> str:
    """A stored persona's words in ``lang`` (its traits are message ids)."""
    traits = persona.get("traits") or []
    return ", ".join(translate(lang, str(msgid), **dict(params)) for msgid, params in traits)


@router.get("/insights")
def insights_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("dashboard.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    lang = language(request)
    _ = translate_for(lang)
    with database(request).unit_of_work(write=False) as session:
        all_programmes = list(session.scalars(select(Programme).order_by(Programme.slug)))
        chosen = next((p for p in all_programmes if p.slug == programme), None)
        if chosen is None and all_programmes:
            chosen = all_programmes[0]
        personas_model: InsightModel | None = None
        latest: list[InsightModel] = []
        if chosen is not None:
            personas_model = latest_model(session, programme_id=chosen.id, kind="personas")
            seen: set[str] = set()
            for model in list_models(session, programme_id=chosen.id):
                if model.kind not in seen:  # newest version of each kind first
                    seen.add(model.kind)
                    latest.append(model)
    personas: list[dict[str, Any]] = []
    charts: list[tuple[str, list[str], list[Series], str]] = []
    if personas_model is not None:
        for persona in personas_model.params.get("personas", []):
            personas.append({**persona, "words": _described(persona, lang)})
        labels = [p["code"] for p in personas]
        charts.append(
            (
                _("Members per persona"),
                labels,
                [Series(_("members"), [int(p["size"]) for p in personas])],
                _("Persona"),
            )
        )
        charts.append(
            (
                _("Share of spend per persona, in percent"),
                labels,
                [
                    Series(_(label), [round(100 * p["profile"].get(key, 0.0)) for p in personas])
                    for key, label in SHARES
                ],
                _("Persona"),
            )
        )
    return render(
        request,
        "admin/insights.html",
        staff=staff,
        programmes=all_programmes,
        chosen=chosen,
        personas=personas,
        personas_model=personas_model,
        charts=charts,
        latest=latest,
        bar_chart=bar_chart,
    )
