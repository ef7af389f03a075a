"""The dashboard: tiles and weekly charts for a programme and a date range, and the
results of the campaigns that ran in it (treated members, points, messages, uplift)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select

from treu.insights.dashboard import campaign_results, dashboard
from treu.kit.money import format_money
from treu.kit.text import N_
from treu.kit.time import utc_now
from treu.programmes.models import Programme
from treu.web.admin import router
from treu.web.admin.context import Staff, database, need
from treu.web.charts import Series, bar_chart
from treu.web.nav import ADMIN
from treu.web.render import language, render, translate_for

ADMIN.link("/admin/dashboard", N_("Dashboard"), order=20, permission="dashboard.read")

DEFAULT_WEEKS = 12


def _day(text: str | None, default: date) -> date:
    try:
        return date.fromisoformat(text) if text else default
    except ValueError:
        return default


@router.get("/dashboard")
def dashboard_page(
    request: Request,
    staff: Annotated[Staff, Depends(need("dashboard.read"))],
    programme: Annotated[str, Query(max_length=64)] = "",
    start: Annotated[str, Query(alias="from", max_length=10)] = "",
    end: Annotated[str, Query(alias="to", max_length=10)] = "",
) -> Response:
    lang = language(request)
    _ = translate_for(lang)
    today = utc_now().date()
    until = _day(end, today)
    since = _day(start, until - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1))
    with database(request).unit_of_work(write=False) as session:
        all_programmes = list(session.scalars(select(Programme).order_by(Programme.slug)))
        chosen = next((p for p in all_programmes if p.slug == programme), None)
        if chosen is None and all_programmes:
            chosen = all_programmes[0]
        figures = dashboard(session, chosen, start=since, end=until) if chosen is not None else None
        results = (
            campaign_results(session, chosen, start=since, end=until, now=utc_now())
            if chosen is not None
            else []
        )
    charts = []
    if figures is not None:
        labels = [w.start.strftime("%d.%m.") if lang == "de" else w.start.strftime("%d %b")
                  for w in figures.weeks]  # fmt: skip
        for title, series in (
            (
                _("Points per week"),
                [
                    Series(_("issued"), [w.issued for w in figures.weeks]),
                    Series(_("redeemed"), [w.redeemed for w in figures.weeks]),
                    Series(_("expired"), [w.expired for w in figures.weeks]),
                ],
            ),
            (
                _("Members per week"),
                [
                    Series(_("active"), [w.active for w in figures.weeks]),
                    Series(_("enrolled"), [w.enrolled for w in figures.weeks]),
                ],
            ),
        ):
            charts.append((title, labels, series))
    campaign_chart = None
    if figures is not None and results:
        currency = figures.currency
        campaign_chart = bar_chart(
            _("Revenue per member: treated and control group"),
            [r.code for r in results],
            [
                Series(_("treated"), [r.revenue_treated_minor for r in results]),
                Series(_("control group"), [r.revenue_control_minor for r in results]),
            ],
            number=lambda minor: format_money(minor, currency, lang),
        )
    return render(
        request,
        "admin/dashboard.html",
        staff=staff,
        programmes=all_programmes,
        chosen=chosen,
        figures=figures,
        since=since,
        until=until,
        charts=charts,
        results=results,
        campaign_chart=campaign_chart,
        bar_chart=bar_chart,
        money=lambda minor, currency: format_money(minor, currency, lang),
    )
