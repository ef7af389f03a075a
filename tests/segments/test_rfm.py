"""RFM quintiles and the named groups, no database."""

from __future__ import annotations

import numpy as np
import pandas as pd

from treu.insights.metrics import MemberTable
from treu.insights.rfm import GROUPS, quintiles, rfm_frame
from treu.segments.models import RfmSegment


def test_quintiles_split_distinct_values_into_fifths() -> None:
    values = np.arange(10)[::-1]  # order of rows does not matter
    assert quintiles(values).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_ties_share_the_lower_score() -> None:
    # Six of ten bought once: all get F = 1, whatever order the rows came in.
    values = np.array([1, 1, 1, 1, 1, 1, 2, 3, 5, 8])
    scores = quintiles(values)
    assert scores.tolist() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    shuffled = np.random.default_rng(7).permutation(values)
    assert sorted(quintiles(shuffled).tolist()) == sorted(scores.tolist())


def test_every_cell_has_a_group_and_the_corners_are_the_usual_ones() -> None:
    assert len(GROUPS) == 25
    assert {g.value for g in GROUPS.values()} == {g.value for g in RfmSegment}
    assert GROUPS[(5, 5)] is RfmSegment.champions
    assert GROUPS[(5, 1)] is RfmSegment.new
    assert GROUPS[(1, 5)] is RfmSegment.cant_lose
    assert GROUPS[(1, 1)] is RfmSegment.lost
    assert GROUPS[(2, 1)] is RfmSegment.hibernating
    assert GROUPS[(4, 1)] is RfmSegment.promising


def test_members_without_a_purchase_are_not_scored() -> None:
    n = 6
    columns = pd.DataFrame(
        {
            # 0: bought yesterday, often, much; 4: long ago, once, little; 5: never
            "metrics.recency_days": [1.0, 5.0, 30.0, 90.0, 300.0, np.nan],
            "metrics.purchases_365": [20, 8, 4, 2, 1, 0],
            "metrics.spend_365": [90_000, 30_000, 9_000, 3_000, 500, 0],
        }
    )
    table = MemberTable(list(range(n)), columns, {})  # type: ignore[arg-type]
    frame = rfm_frame(table)
    assert frame["rfm_segment"].tolist()[0] == "champions"
    assert frame["rfm_segment"].tolist()[4] == "lost"
    assert frame["rfm_segment"].tolist()[5] is None
    assert np.isnan(frame["rfm_r"].iloc[5])
    assert frame[["rfm_r", "rfm_f", "rfm_m"]].iloc[0].tolist() == [5, 5, 5]
    assert frame[["rfm_r", "rfm_f", "rfm_m"]].iloc[4].tolist() == [1, 1, 1]
    assert frame["frequency_365"].tolist() == [20, 8, 4, 2, 1, 0]
