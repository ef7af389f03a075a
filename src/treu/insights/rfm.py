"""RFM: recency, frequency and monetary quintile scores and the named groups.

Who is scored: active members with at least one purchase ever. Recency is days since
the latest purchase (fewer is better), frequency the purchases of the last 365 days,
monetary the net spend of the last 365 days (``treu.insights.metrics``).

Scores (1 = worst fifth, 5 = best fifth): each member's position in the scored members
ordered from worst to best, in fifths: ``score = 1 + floor(5 * (rank - 1) / n)``, where
``rank`` is the *lowest* position of the member's tie group. So equal values always get
the same score, and a tie never lifts a member above one who did strictly better: the
many one-time buyers all get F = 1, not a score spread by the order rows came in.

Groups: the common RFM map over R and FM = round((F + M) / 2) (halves rounded up),
covering all 25 cells:

======  ==============  ===================  ===================  =========  =========
R/FM    1               2                    3                    4          5
======  ==============  ===================  ===================  =========  =========
5       new             potential_loyalists  potential_loyalists  champions  champions
4       promising       potential_loyalists  potential_loyalists  loyal      loyal
3       need_attention  need_attention       need_attention       loyal      loyal
2       hibernating     hibernating          at_risk              at_risk    cant_lose
1       lost            lost                 at_risk              at_risk    cant_lose
======  ==============  ===================  ===================  =========  =========

(see ``GROUPS`` for the exact cells; docs/segments.md draws the same table).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from treu.insights.metrics import MemberTable
from treu.segments.models import RfmSegment
from treu.segments.scores import save_scores

_R = RfmSegment


def _grid() -> dict[tuple[int, int], RfmSegment]:
    """(R, FM) -> group."""
    cells: dict[tuple[int, int], RfmSegment] = {}
    for fm in range(1, 6):
        cells[(5, fm)] = _R.new if fm == 1 else _R.potential_loyalists if fm <= 3 else _R.champions
        cells[(4, fm)] = (
            _R.promising if fm == 1 else _R.potential_loyalists if fm <= 3 else _R.loyal
        )
        cells[(3, fm)] = _R.need_attention if fm <= 3 else _R.loyal
        for r, low in ((2, _R.hibernating), (1, _R.lost)):
            cells[(r, fm)] = low if fm <= 2 else _R.at_risk if fm <= 4 else _R.cant_lose
    return cells


GROUPS: dict[tuple[int, int], RfmSegment] = _grid()


def quintiles(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """1..5 per value, higher values scoring higher; ties share the lowest score of
    their group (module docstring)."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype="int64")
    rank = np.asarray(pd.Series(values).rank(method="min"), dtype="float64")
    return (1 + np.floor(5 * (rank - 1) / n)).astype("int64")


def rfm_frame(table: MemberTable) -> pd.DataFrame:
    """Scores for every member in ``table`` (a row per table position): the three
    metrics for all, R/F/M and the group for those with a purchase (None for the
    others)."""
    cols = table.columns
    recency = cols["metrics.recency_days"].to_numpy(dtype="float64")
    frequency = cols["metrics.purchases_365"].to_numpy(dtype="int64")
    monetary = cols["metrics.spend_365"].to_numpy(dtype="int64")
    scored = ~np.isnan(recency)
    r = np.full(len(table), np.nan)
    f = np.full(len(table), np.nan)
    m = np.full(len(table), np.nan)
    r[scored] = quintiles(-recency[scored])
    f[scored] = quintiles(frequency[scored])
    m[scored] = quintiles(monetary[scored])
    fm = np.floor((f + m) / 2 + 0.5)
    lookup = np.full((6, 6), None, dtype=object)
    for (rr, ff), group in GROUPS.items():
        lookup[rr, ff] = group.value
    segment = np.full(len(table), None, dtype=object)
    segment[scored] = lookup[r[scored].astype("int64"), fm[scored].astype("int64")]
    return pd.DataFrame(
        {
            "recency_days": recency,
            "frequency_365": frequency,
            "spend_365_minor": monetary,
            "rfm_r": r,
            "rfm_f": f,
            "rfm_m": m,
            "rfm_segment": pd.Series(segment, dtype=object),
        }
    )


RFM_COLUMNS = ("rfm_r", "rfm_f", "rfm_m", "rfm_segment")
"""What RFM writes to ``member_scores``: the scores and the group (the metrics they come
from are kept in ``member_metrics``)."""


def changed_rows(table: MemberTable, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    """Positions of the members whose RFM in ``frame`` differs from what the table read
    from ``member_scores`` (None and None are the same)."""
    differs = np.zeros(len(table), dtype=bool)
    for name in RFM_COLUMNS:
        new = frame[name].to_numpy(dtype=object)
        old = table.columns[f"scores.{name}"].to_numpy(dtype=object)
        new_missing, old_missing = pd.isna(new), pd.isna(old)
        same = (new_missing & old_missing) | (
            ~new_missing & ~old_missing & (new == old).astype(bool)
        )
        differs |= ~same
    return np.flatnonzero(differs)


def save_rfm(session: Session, *, table: MemberTable, programme_id: Any) -> pd.DataFrame:
    """Compute RFM for the table's members and write the rows that changed (their other
    scores stay); the table's ``scores.*`` columns are updated in place, so segments
    evaluated over the same table see the new RFM. From one day to the next most scores
    stay: everyone's recency grows by a day, which moves no one's rank."""
    frame = rfm_frame(table)
    at = changed_rows(table, frame)
    if len(at):
        changed = frame.iloc[at].assign(member_id=table.ids_of(at))
        save_scores(
            session,
            programme_id=programme_id,
            frame_or_rows=changed,
            columns=RFM_COLUMNS,
            now=table.now,
        )
    for name in RFM_COLUMNS:
        table.columns[f"scores.{name}"] = frame[name].to_numpy()
    return frame
