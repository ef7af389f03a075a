"""Churn risk: the probability that a customer makes no purchase in the next
``horizon_days``, learnt from the purchase history by a supervised model and checked
against BG/NBD's own answer.

Features as of a cut-off (``features``), from the purchases dated on or before it, one row
per customer seen by then: days since the last purchase, age, repeat purchases, mean
purchase value, purchases in the last 30 / 90 / 180 days, spend in the last 90 days and its
trend against the 90 days before, the mean gap between purchases and how overdue the next
one is, and BG/NBD's P(alive), expected purchases and probability of no purchase in the
horizon (a BG/NBD fit on the same history). The label (``labels``) is 1 when the customer
made no purchase in the ``horizon_days`` after the cut-off.

``train_and_score(purchases, cutoff)`` never looks past ``cutoff``: it builds the training
set at ``cutoff - horizon_days`` (labels from the rows up to ``cutoff``), trains a
scikit-learn ``HistGradientBoostingClassifier`` on three quarters of those customers and
compares it on the remaining quarter, by ROC AUC, with the baseline — BG/NBD's probability
of no purchase in the horizon, ``1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T +
t)) ** (r + x)`` (``1 - P(alive)`` alone is not a probability of the label). The better one
scores every customer as of ``cutoff``. ``evaluate`` does the same as of ``until`` and
checks the scores against what happened in the ``horizon_days`` after it.

Gradient boosting with log loss gives usable probabilities as it is; the calibration table
of ``evaluate`` shows how well on the held-out period.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from treu.errors import Invalid
from treu.insights import clv

FEATURES = (
    "recency_days",
    "age_days",
    "frequency",
    "monetary",
    "purchases_30",
    "purchases_90",
    "purchases_180",
    "spend_90",
    "spend_trend",
    "mean_gap_days",
    "overdue",
    "p_alive",
    "expected_purchases",
    "bgnbd_churn",
)
VALIDATION_SHARE = 0.25
MIN_TRAINING_CUSTOMERS = 40
MIN_CLASS = 10
"""Fewer churners (or fewer who stayed) than this among the training customers: no model
(a stratified split needs both in both halves), P(alive) is used."""
CALIBRATION_BINS = 10
SEED = 0
MAX_TRAINING_CUSTOMERS = 200_000
"""The boosting model learns from a random sample of at most this many customers: at 1M
customers the whole set took minutes on the 2-core machine, and 200,000 examples are
plenty for 14 features."""
ONE_THREAD_BELOW = 200_000
"""Training rows under which the boosting runs on one thread: OpenMP threads spinning on
a busy machine cost more than they bring on small data (measured: 20 s instead of 2 s for
5,000 customers with four busy processes on two cores)."""

FloatArray = npt.NDArray[np.float64]


class ChurnInvalid(Invalid):
    code = "churn_invalid"
    title = "Churn risk cannot be computed"


def _day(value: date | pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(value).normalize()


def _as_days(purchases: pd.DataFrame | clv.Days) -> clv.Days:
    return purchases if isinstance(purchases, clv.Days) else clv.merge_days(purchases)


def _day_number(value: pd.Timestamp) -> int:
    return int(np.datetime64(value.date(), "D").astype(np.int64))


def features(
    baskets: pd.DataFrame | clv.Days, cutoff: date | pd.Timestamp, horizon_days: int = 90
) -> pd.DataFrame:
    """The features of every customer with a purchase on or before ``cutoff`` (index
    ``customer_id``), from those purchases only. ``baskets``: purchases or purchase lines
    (merged per customer and day here), or ``clv.merge_days``'s result."""
    end = _day(cutoff)
    days = _as_days(baskets)
    end_day = _day_number(end)
    keep = days.day <= end_day
    if not keep.any():
        raise ChurnInvalid(f"no purchases on or before {end.date().isoformat()}")
    summary = clv.summary(days, calibration_end=end, unit_days=1.0)
    x = summary["frequency"].to_numpy(np.float64)
    span_days = summary["recency"].to_numpy(np.float64)
    age_days = summary["T"].to_numpy(np.float64)
    t_x, age = span_days / 7.0, age_days / 7.0  # weeks for BG/NBD
    n = len(summary)

    # summary rows are the customers seen, in code order: code -> row
    row_of = np.cumsum(np.bincount(days.customer[keep], minlength=len(days.customers)) > 0) - 1
    codes = row_of[days.customer[keep]]
    days_before = end_day - days.day[keep]
    amount = days.amount[keep]

    def count(window: int) -> FloatArray:
        return np.bincount(codes[days_before < window], minlength=n).astype(np.float64)

    def spend(low: int, high: int) -> FloatArray:
        inside = (days_before >= low) & (days_before < high)
        found = np.bincount(codes[inside], weights=amount[inside], minlength=n)
        return np.asarray(found, dtype=np.float64)

    purchases = np.bincount(codes, minlength=n).astype(np.float64)
    total = np.bincount(codes, weights=amount, minlength=n)
    recent, before = spend(0, 90), spend(90, 180)
    with np.errstate(divide="ignore", invalid="ignore"):
        trend = np.where(recent + before > 0, (recent - before) / (recent + before), np.nan)
        gap = np.where(x > 0, span_days / x, np.nan)
        recency_days = age_days - span_days
        overdue = recency_days / gap

    out = pd.DataFrame(
        {
            "recency_days": recency_days,
            "age_days": age_days,
            "frequency": x,
            "monetary": total / purchases,
            "purchases_30": count(30),
            "purchases_90": count(90),
            "purchases_180": count(180),
            "spend_90": recent,
            "spend_trend": trend,
            "mean_gap_days": gap,
            "overdue": overdue,
        },
        index=summary.index,
    )
    try:
        model = clv.fit_bgnbd(summary.assign(recency=t_x, T=age))
    except clv.CannotFit:
        # no repeat purchase anywhere: BG/NBD says nothing; the boosting model copes
        out["p_alive"] = 1.0
        out["expected_purchases"] = np.nan
        out["bgnbd_churn"] = np.nan
    else:
        horizon = horizon_days / 7.0
        # once per distinct history (the hypergeometric function is the costly part)
        codes, distinct = pd.MultiIndex.from_arrays([x, t_x, age]).factorize()
        dx, dt, da = (distinct.get_level_values(i).to_numpy(np.float64) for i in range(3))
        out["p_alive"] = model.p_alive(dx, dt, da)[codes]
        out["expected_purchases"] = model.expected_purchases(horizon, dx, dt, da)[codes]
        out["bgnbd_churn"] = model.probability_no_purchase(horizon, dx, dt, da)[codes]
    return out


def labels(
    baskets: pd.DataFrame | clv.Days,
    customers: pd.Index,
    cutoff: date | pd.Timestamp,
    horizon_days: int = 90,
) -> pd.Series:
    """1 for each of ``customers`` without a purchase in ``(cutoff, cutoff + horizon]``."""
    days = _as_days(baskets)
    end_day = _day_number(_day(cutoff))
    after = (days.day > end_day) & (days.day <= end_day + horizon_days)
    buyers = days.customers.take(np.unique(days.customer[after]))
    bought = customers.isin(buyers)
    return pd.Series((~bought).astype(np.int64), index=customers, name="churned")


def _baseline(frame: pd.DataFrame) -> FloatArray:
    """BG/NBD's churn probability, or days since the last purchase scaled to (0, 1) when
    BG/NBD could not be fitted (only the ranking matters then)."""
    risk: FloatArray = frame["bgnbd_churn"].to_numpy(np.float64)
    if np.isnan(risk).any():
        days: FloatArray = frame["recency_days"].to_numpy(np.float64)
        scaled: FloatArray = days / (days.max() + 1.0)
        return scaled
    return risk


def _model() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=300,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=100,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=15,
        random_state=SEED,
    )


def _auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    y = np.asarray(y)
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, score))


def train_and_score(
    purchases: pd.DataFrame, cutoff: date | pd.Timestamp, horizon_days: int = 90
) -> pd.DataFrame:
    """Churn risk of every customer seen by ``cutoff``, from rows on or before it only.

    Index ``customer_id``; columns ``churn_risk`` (from the chosen scorer), ``p_alive``,
    ``model_risk`` (the boosting model's, NaN when it could not be trained),
    ``bgnbd_risk`` and ``recency_days``. ``attrs``: ``chosen`` (``"model"`` or
    ``"p_alive"``), ``validation`` (ROC AUC of both on the inner validation customers),
    ``training_customers`` (seen at the training cut-off; the model learns from at most
    ``MAX_TRAINING_CUSTOMERS`` of them) and ``training_churn_rate``."""
    if horizon_days < 1:
        raise ChurnInvalid("the horizon must be at least one day")
    end = _day(cutoff)
    history = clv.merge_days(purchases[purchases["date"] <= end])
    now = features(history, end, horizon_days)
    training_end = end - pd.Timedelta(days=horizon_days)

    chosen = "p_alive"
    validation: dict[str, float | None] = {"model": None, "p_alive": None}
    model_risk = np.full(len(now), np.nan)
    trained, churn_rate = 0, float("nan")
    if (history.day <= _day_number(training_end)).any():
        past = features(history, training_end, horizon_days)
        y = labels(history, past.index, training_end, horizon_days).to_numpy()
        trained, churn_rate = len(past), float(y.mean())
        if len(past) >= MIN_TRAINING_CUSTOMERS and min(y.sum(), len(y) - y.sum()) >= MIN_CLASS:
            if len(past) > MAX_TRAINING_CUSTOMERS:
                sample = np.sort(
                    np.random.default_rng(SEED).choice(
                        len(past), MAX_TRAINING_CUSTOMERS, replace=False
                    )
                )
                past, y = past.iloc[sample], y[sample]
            chosen, validation, fitted = _choose(past, y)
            if fitted is not None:
                with _threads(len(now)):
                    model_risk = fitted.predict_proba(now[list(FEATURES)])[:, 1]

    baseline = _baseline(now)
    risk = model_risk if chosen == "model" else baseline
    out = pd.DataFrame(
        {
            "churn_risk": risk,
            "p_alive": now["p_alive"].to_numpy(np.float64),
            "model_risk": model_risk,
            "bgnbd_risk": baseline,
            "recency_days": now["recency_days"].to_numpy(np.float64),
        },
        index=now.index,
    )
    out.attrs.update(
        chosen=chosen,
        # False when BG/NBD could not be fitted: the baseline is then a ranking by days
        # since the last purchase, not a probability.
        probability=chosen == "model" or not bool(np.isnan(now["bgnbd_churn"]).any()),
        validation=validation,
        training_customers=trained,
        training_churn_rate=churn_rate,
    )
    return out


def _choose(
    past: pd.DataFrame, y: npt.NDArray[np.int64]
) -> tuple[str, dict[str, float | None], HistGradientBoostingClassifier | None]:
    """Train on three quarters, compare with the baseline on the rest; the model is
    refitted on all training customers when it wins (and only then used)."""
    x_all = past[list(FEATURES)]
    baseline = _baseline(past)
    index = np.arange(len(past))
    fit_at, check_at = train_test_split(
        index, test_size=VALIDATION_SHARE, random_state=SEED, stratify=y
    )
    with _threads(len(past)):
        model = _model().fit(x_all.iloc[fit_at], y[fit_at])
        scores = {
            "model": _auc(y[check_at], model.predict_proba(x_all.iloc[check_at])[:, 1]),
            "p_alive": _auc(y[check_at], baseline[check_at]),
        }
        model_auc, base_auc = scores["model"], scores["p_alive"]
        if model_auc is None or base_auc is None or model_auc <= base_auc:
            return "p_alive", scores, model
        return "model", scores, _model().fit(x_all, y)


def _threads(rows: int) -> Any:
    return threadpool_limits(limits=1 if rows < ONE_THREAD_BELOW else None, user_api="openmp")


def _calibration(y: FloatArray, risk: FloatArray) -> list[list[float]]:
    """Per tenth of the predicted probability: mean prediction, observed churn rate,
    customers (empty tenths left out)."""
    bins = np.minimum((risk * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    rows = []
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        count = int(inside.sum())
        if count:
            rows.append([float(risk[inside].mean()), float(y[inside].mean()), count])
    return rows


def evaluate(
    purchases: pd.DataFrame, until: date | pd.Timestamp, horizon_days: int = 90
) -> dict[str, Any]:
    """Churn risk scored as of ``until`` from the rows on or before it, checked against
    the ``horizon_days`` after it: ROC AUC of the model, of the BG/NBD baseline
    (``p_alive``) and of days since the last purchase (``recency``); Brier scores of the
    two probabilities; the calibration of the churn risk shipped (the chosen one); which
    one ``train_and_score`` chose on its own inner validation (without looking past
    ``until``)."""
    end = _day(until)
    last = purchases["date"].max()
    needed = end + pd.Timedelta(days=horizon_days)
    if pd.isna(last) or last < needed:
        raise ChurnInvalid(
            f"the purchases end on {_iso(last)}; checking {horizon_days} days after "
            f"{end.date().isoformat()} needs purchases up to {needed.date().isoformat()} "
            "(choose an earlier date)"
        )
    scores = train_and_score(purchases, end, horizon_days)
    all_baskets = clv.merge_days(purchases[purchases["date"] <= needed])
    y = labels(all_baskets, scores.index, end, horizon_days).to_numpy(np.float64)
    model = scores["model_risk"].to_numpy(np.float64)
    has_model = not np.isnan(model).any()
    base = scores["bgnbd_risk"].to_numpy(np.float64)
    risk = scores["churn_risk"].to_numpy(np.float64)
    return {
        "customers": len(scores),
        "churn_rate": float(y.mean()),
        "roc_auc": {
            "model": _auc(y, model) if has_model else None,
            "p_alive": _auc(y, base),
            "recency": _auc(y, scores["recency_days"].to_numpy(np.float64)),
        },
        "brier": {
            "model": float(brier_score_loss(y, model)) if has_model else None,
            "p_alive": float(brier_score_loss(y, base)),
        },
        "calibration": _calibration(y, risk),
        "chosen": scores.attrs["chosen"],
        "validation": scores.attrs["validation"],
        "horizon_days": horizon_days,
    }


def _iso(value: object) -> str:
    if value is None or pd.isna(value):
        return "(no date)"
    return str(pd.Timestamp(value).date().isoformat())
