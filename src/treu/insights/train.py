"""``treu insights train``: every model of a programme, in order, from its purchase history
in the database, with scores written to ``member_scores`` and each trained model recorded
(``treu.segments.models_registry``, the next version of its kind, with its metrics).

Steps (``STEPS``), each timed and reported through ``on_step``:

1. ``history`` — the purchase lines (``treu.insights.history``), read once for all;
2. ``clv`` — BG/NBD + Gamma-Gamma (``treu.insights.clv``) on the history, calibration to
   the day before ``now``; writes ``clv_365_minor`` and ``p_alive``;
3. ``churn`` — the churn model (``treu.insights.churn``), horizon 90 days, cut-off the
   day before ``now``; writes ``churn_risk``;
4. ``personas`` — k-means personas (``treu.insights.personas``); writes ``persona``;
5. ``recommend`` — the item-item recommender (``treu.insights.recommend``) on the
   history, until the day before ``now``: the top ``RECOMMEND_TOP`` products of each
   member who bought in the last ``RECOMMEND_ACTIVE_DAYS`` days, each with its source
   (``again``: the member bought it; ``similar``: members with the same basket buy it;
   ``popular``), written to ``member_recommendations`` (``treu.segments.recommendations``),
   which ``treu.insights.offers`` serves;
6. ``segments`` — RFM scores and every active segment's members
   (``treu.insights.segmenting``, which reads its own metrics set-based), last, so that
   segments over scores ("valuable members at risk") see tonight's.

A step that cannot learn anything from the data (say, nobody bought twice) is skipped
with the reason, never faked.
Each step that writes does so in its own unit of work, so a failure later keeps what
earlier steps computed. Nothing leaves the database: models and scores live in it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from treu.db.session import Database
from treu.errors import Invalid
from treu.events.models import PurchaseLine
from treu.insights import churn, clv, segmenting
from treu.insights import recommend as recommender
from treu.insights.history import read_history
from treu.insights.personas import find_personas
from treu.kit.money import currency_exponent
from treu.kit.time import utc_now
from treu.programmes.models import Programme
from treu.programmes.service import programmes
from treu.segments.models import RecommendationSource
from treu.segments.models_registry import record_model
from treu.segments.recommendations import COLUMNS as RECOMMENDATION_COLUMNS
from treu.segments.recommendations import save_recommendations
from treu.segments.scores import clear_scores, save_scores

log = logging.getLogger(__name__)

STEPS = ("history", "clv", "churn", "personas", "recommend", "segments")
CHURN_HORIZON_DAYS = 90
RECOMMEND_TOP = 20
RECOMMEND_ACTIVE_DAYS = 365
"""Members whose last purchase is older are not scored (their stored rows go; the API
falls back to per-request scoring for them): scoring is dense over all products per
member, so this bounds the step's cost by the members who still shop."""
_SOURCE_BLOCK = 2_000  # customers per sparse block when telling 'similar' from 'popular'


@dataclass
class StepReport:
    name: str
    status: str = "pending"
    """``done``, ``skipped`` or ``failed``."""
    seconds: float = 0.0
    note: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    version: int | None = None
    """The model's version in the registry, when the step records one."""


@dataclass
class TrainReport:
    programme: str
    steps: list[StepReport]
    seconds: float = 0.0

    def step(self, name: str) -> StepReport:
        return next(s for s in self.steps if s.name == name)


OnStep = Callable[[StepReport], None]
"""Called when a step starts (status ``running``) and when it ends."""


class StepSkipped(Exception):
    """A step that has nothing to learn from (its message says why)."""


def train(
    db: Database,
    *,
    programme: str,
    now: datetime | None = None,
    on_step: OnStep | None = None,
) -> TrainReport:
    """Run every step for the programme (slug or id); see the module docstring."""
    started = time.perf_counter()
    now = now or utc_now()
    notify = on_step or (lambda step: None)
    with db.unit_of_work(write=False) as session:
        found = programmes.get(session, programme)
        session.expunge(found)
    report = TrainReport(programme=found.slug, steps=[StepReport(name) for name in STEPS])
    state: dict[str, Any] = {}
    runners: dict[str, Callable[[Database, Programme, datetime, dict[str, Any], StepReport], None]]
    runners = {
        "history": _history,
        "segments": _segments,
        "clv": _clv,
        "churn": _churn,
        "personas": _personas,
        "recommend": _recommend,
    }
    for step in report.steps:
        if step.name != "history" and "history" not in state:
            step.status, step.note = "skipped", "no history: its step failed"
            notify(step)
            continue
        step.status = "running"
        notify(step)
        begun = time.perf_counter()
        try:
            runners[step.name](db, found, now, state, step)
            if step.status == "running":
                step.status = "done"
        except (StepSkipped, Invalid) as why:
            step.status = "skipped"
            step.note = str(why)
            _forget(db, found, step.name)
        except Exception as error:  # the next steps and programmes still run
            log.exception("insights train %s: step %s failed", found.slug, step.name)
            step.status = "failed"
            step.note = f"{type(error).__name__}: {error}"
        finally:
            step.seconds = time.perf_counter() - begun
        notify(step)
    report.seconds = time.perf_counter() - started
    return report


_SCORED_BY = {"clv": ["clv_365_minor", "p_alive"], "churn": ["churn_risk"], "personas": ["persona"]}
"""The member scores each step writes: a skipped step leaves none of its old ones."""


def _forget(db: Database, programme: Programme, step: str) -> None:
    """A step skipped this time (too little data now) takes its earlier results back:
    an old persona code names another group after a new training, an old
    recommendation would be served as if fresh."""
    with db.unit_of_work() as session:
        if step in _SCORED_BY:
            clear_scores(session, programme_id=programme.id, columns=_SCORED_BY[step])
        elif step == "recommend":
            save_recommendations(
                session,
                programme_id=programme.id,
                frame=pd.DataFrame(columns=RECOMMENDATION_COLUMNS),
            )


def _keep(
    db: Database,
    programme: Programme,
    now: datetime,
    step: StepReport,
    scores: pd.DataFrame,
    metrics: dict[str, Any],
    params: dict[str, Any],
) -> None:
    """A scoring step's results in one unit of work: its columns (``_SCORED_BY``) for
    the members it scored, NULL for the others, and the next version of its model."""
    with db.unit_of_work() as session:
        save_scores(
            session,
            programme_id=programme.id,
            frame_or_rows=scores,
            columns=_SCORED_BY[step.name],
            now=now,
            clear_others=True,
        )
        model = record_model(
            session,
            trained_at=now,
            programme_id=programme.id,
            kind=step.name,
            metrics=_json(metrics),
            params=params,
        )
        step.version = model.version
    step.metrics = metrics


def _history(
    db: Database, programme: Programme, now: datetime, state: dict[str, Any], step: StepReport
) -> None:
    with db.unit_of_work(write=False) as session:
        history = read_history(session, programme=programme, until=now)
    state["history"] = history
    step.metrics = {
        "lines": len(history),
        "members": int(history["customer_id"].nunique()),
    }
    step.note = f"{len(history):,} purchase lines of {step.metrics['members']:,} members"


def _segments(
    db: Database, programme: Programme, now: datetime, state: dict[str, Any], step: StepReport
) -> None:
    with db.unit_of_work() as session:
        attached = programmes.get(session, programme.id)
        refreshed = segmenting.segments.refresh(session, programme=attached, now=now)
    step.metrics = {"segments": len(refreshed)}
    step.note = f"RFM and {len(refreshed)} segment(s) refreshed"


def _day_before(programme: Programme, now: datetime) -> pd.Timestamp:
    """The last whole day before ``now`` in the programme's time zone (the history's
    days are local)."""
    local = pd.Timestamp(now).tz_convert(programme.timezone).tz_localize(None).normalize()
    return local - pd.Timedelta(days=1)


def _clv(
    db: Database, programme: Programme, now: datetime, state: dict[str, Any], step: StepReport
) -> None:
    history: pd.DataFrame = state["history"]
    if history.empty:
        raise StepSkipped("no purchases")
    end = _day_before(programme, now)
    table = clv.summary(history, calibration_end=end)
    bgnbd = clv.fit_bgnbd(table)
    gg = clv.fit_gamma_gamma(table)
    values = clv.customer_values(table, bgnbd, gg)
    scale = 10 ** currency_exponent(programme.currency)
    scores = pd.DataFrame(
        {
            "member_id": values.index.astype(str),
            "clv_365_minor": np.round(values["clv_365"].to_numpy() * scale),
            "p_alive": values["p_alive"].to_numpy(),
        }
    )
    metrics = {
        "customers": len(table),
        "bgnbd_log_likelihood": bgnbd.log_likelihood,
        "gamma_gamma_log_likelihood": gg.log_likelihood,
        "mean_p_alive": float(values["p_alive"].mean()),
        "mean_clv_365": float(values["clv_365"].mean()),
    }
    params = {
        "bgnbd": {"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b},
        "gamma_gamma": {"p": gg.p, "q": gg.q, "gamma": gg.gamma},
        "calibration_end": end.date().isoformat(),
        "unit_days": table.attrs.get("unit_days", 7.0),
    }
    _keep(db, programme, now, step, scores, metrics, params)
    step.note = (
        f"{len(table):,} customers; r={bgnbd.r:.3f} alpha={bgnbd.alpha:.3f} "
        f"a={bgnbd.a:.3f} b={bgnbd.b:.3f}"
    )


def _churn(
    db: Database, programme: Programme, now: datetime, state: dict[str, Any], step: StepReport
) -> None:
    history: pd.DataFrame = state["history"]
    if history.empty:
        raise StepSkipped("no purchases")
    cutoff = _day_before(programme, now)
    scored = churn.train_and_score(
        history[["customer_id", "date", "amount"]], cutoff, CHURN_HORIZON_DAYS
    )
    scores = pd.DataFrame(
        {
            "member_id": scored.index.astype(str),
            "churn_risk": scored["churn_risk"].to_numpy(),
        }
    )
    attrs = dict(scored.attrs)
    if not attrs.get("probability", True):
        raise StepSkipped(
            "too few repeat purchases for BG/NBD and too few customers for the model: "
            "no churn probability to write"
        )
    metrics = {
        "customers": len(scored),
        "chosen": attrs.get("chosen"),
        "validation_roc_auc": attrs.get("validation"),
        "training_customers": attrs.get("training_customers"),
        "training_churn_rate": attrs.get("training_churn_rate"),
    }
    params = {"horizon_days": CHURN_HORIZON_DAYS, "cutoff": cutoff.date().isoformat()}
    _keep(db, programme, now, step, scores, metrics, params)
    step.note = f"{len(scored):,} members scored with {attrs.get('chosen')}"


def _personas(
    db: Database, programme: Programme, now: datetime, state: dict[str, Any], step: StepReport
) -> None:
    history: pd.DataFrame = state["history"]
    end = _day_before(programme, now) + pd.Timedelta(days=1)
    found = find_personas(history, now=end.date())
    if found is None:
        raise StepSkipped("too few members bought in the last year for personas")
    metrics = {
        "k": found.k,
        "silhouette": found.silhouette,
        "silhouettes": {str(k): v for k, v in found.silhouettes.items()},
        "members": len(found.assignments),
        "sizes": {p.code: p.size for p in found.personas},
    }
    _keep(db, programme, now, step, found.assignments, metrics, _json(found.params()))
    step.note = f"{found.k} personas (silhouette {found.silhouette:.2f})"


def _recommend(
    db: Database, programme: Programme, now: datetime, state: dict[str, Any], step: StepReport
) -> None:
    history: pd.DataFrame = state["history"]
    if history.empty:
        raise StepSkipped("no purchases")
    begun = time.perf_counter()
    until = _day_before(programme, now).date()
    settings = recommender.Settings()
    model = recommender.fit(
        history[["customer_id", "date", "item"]], until=until, settings=settings
    )
    # Active members: a purchase in the last RECOMMEND_ACTIVE_DAYS days (by date: the
    # model's weights are sums over days, so several old purchases could pass for one
    # recent one).
    since = pd.Timestamp(until) - pd.Timedelta(days=RECOMMEND_ACTIVE_DAYS)
    dates = pd.to_datetime(history["date"])
    recent = history.loc[(dates > since) & (dates <= pd.Timestamp(until)), "customer_id"]
    found_rows = model.customers.get_indexer(pd.Index(recent.unique()))
    rows = np.unique(found_rows[found_rows >= 0]).astype(np.int64)
    if rows.size == 0:
        raise StepSkipped(f"nobody bought in the last {RECOMMEND_ACTIVE_DAYS} days")
    fitted = time.perf_counter()
    items, scores = recommender.top_k(model, RECOMMEND_TOP, "model", rows)
    source = _sources(model, rows, items)
    scored = time.perf_counter()
    width = items.shape[1]
    skus = model.items.to_numpy()[items.ravel()].astype(str)
    with db.unit_of_work(write=False) as session:
        products = _product_data(session, programme.id, np.unique(skus).tolist())
    frame = pd.DataFrame(
        {
            "member_id": np.repeat(np.asarray(model.customers, dtype=object)[rows], width),
            "rank": np.tile(np.arange(1, width + 1), rows.size),
            "sku": skus,
            "score": np.round(scores.ravel().astype(np.float64), 6),
            "source": source.ravel(),
        }
    )
    frame["category"] = frame["sku"].map(products["category"])
    frame["name"] = frame["sku"].map(products["name"])
    saving = time.perf_counter()
    with db.unit_of_work() as session:
        written = save_recommendations(session, programme_id=programme.id, frame=frame, now=now)
        counts = frame["source"].value_counts()
        metrics = {
            "customers": len(model.customers),
            "items": len(model.items),
            "members_scored": int(rows.size),
            "rows": written,
            "sources": {s.value: int(counts.get(s.value, 0)) for s in RecommendationSource},
            "seconds": round(time.perf_counter() - begun, 3),
            "fit_seconds": round(fitted - begun, 3),
            "score_seconds": round(scored - fitted, 3),
            "save_seconds": round(time.perf_counter() - saving, 3),
        }
        params = {
            **dataclasses.asdict(settings),
            "top": RECOMMEND_TOP,
            "active_days": RECOMMEND_ACTIVE_DAYS,
            "until": until.isoformat(),
        }
        model_row = record_model(
            session,
            trained_at=now,
            programme_id=programme.id,
            kind="recommend",
            metrics=_json(metrics),
            params=_json(params),
        )
        step.version = model_row.version
    step.metrics = metrics
    step.note = f"{written:,} recommendations for {rows.size:,} members"


def _sources(
    model: recommender.Model, rows: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
) -> npt.NDArray[np.object_]:
    """Each recommendation's source, from the model's matrices: ``again`` if the member
    bought the item, else ``similar`` if its item-item score (the member's history times
    the similarity) is positive, else ``popular``. Sparse, a block of members at a time."""
    out = np.full(items.shape, RecommendationSource.popular.value, dtype=object)
    width = items.shape[1]
    for start in range(0, rows.size, _SOURCE_BLOCK):
        stop = min(start + _SOURCE_BLOCK, rows.size)
        history = model.history[rows[start:stop]]
        cols = items[start:stop].ravel()
        local = np.repeat(np.arange(stop - start), width)
        bought = np.asarray(history[local, cols]).reshape(-1, width) > 0
        similar = np.asarray((history @ model.similarity).tocsr()[local, cols]).reshape(-1, width)
        block = out[start:stop]
        block[similar > 0] = RecommendationSource.similar.value
        block[bought] = RecommendationSource.again.value
    return out


def _product_data(session: Session, programme_id: uuid.UUID, skus: list[str]) -> pd.DataFrame:
    """Name and category of the recommended products: one aggregate over the programme's
    lines of these SKUs (product data, not personal)."""
    rows = session.execute(
        select(PurchaseLine.sku, func.max(PurchaseLine.name), func.max(PurchaseLine.category))
        .where(
            PurchaseLine.programme_id == programme_id,
            PurchaseLine.sku.in_(bindparam("skus", expanding=True)),
        )
        .group_by(PurchaseLine.sku),
        {"skus": skus},
    ).all()
    return pd.DataFrame(rows, columns=["sku", "name", "category"]).set_index("sku")


def _json(value: Any) -> Any:
    """Metrics and parameters as JSON can hold them: NaN and infinities become None,
    numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
