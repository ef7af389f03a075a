"""The analyst commands' purchase file: columns checked, bad lines named, days merged."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from treu.insights.purchases import PurchaseFileInvalid, baskets, read_purchases


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "purchases.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_are_read_with_types_and_optional_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Customer_ID,date,amount,item\n"
        "c1,2024-01-02,3.50,milk\n"
        "c1,2024-01-02T18:30:00,1,bread\n"
        "c2,2024-02-03,2,milk\n",
    )
    frame = read_purchases(path)
    assert list(frame.columns) == ["customer_id", "date", "amount", "item"]
    assert frame["customer_id"].tolist() == ["c1", "c1", "c2"]
    assert [d.date() for d in frame["date"]] == [
        date(2024, 1, 2),
        date(2024, 1, 2),
        date(2024, 2, 3),
    ]
    assert frame["amount"].tolist() == [3.5, 1.0, 2.0]
    merged = baskets(frame)
    assert merged["amount"].tolist() == [4.5, 2.0]
    assert merged["customer_id"].tolist() == ["c1", "c2"]


def test_until_keeps_rows_on_or_before_the_day(tmp_path: Path) -> None:
    path = write(
        tmp_path, "customer_id,date,amount\na,2024-01-01,1\na,2024-01-02,1\nb,2024-01-03,1\n"
    )
    assert len(read_purchases(path, until=date(2024, 1, 2))) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id,day,amount\na,2024-01-01,1\n", "no column 'date'"),
        ("customer_id,date,amount\na,2024-01-01,1\nb,2024-13-01,1\n", "line 3: date '2024-13-01'"),
        (
            "customer_id,date,amount\na,2024-01-01,1\nb,2024-01-02,-2\n",
            "line 3: amount -2 is negative",
        ),
        ("customer_id,date,amount\na,2024-01-01,x\n", "line 2: amount 'x' is not a number"),
        (
            "customer_id,date,amount\na,2024-01-01,1\n,2024-01-01,1\n",
            "line 3: customer_id is empty",
        ),
        ("", "the file is empty"),
        # Blank lines keep the count; a row with too many fields shifts nothing.
        ("customer_id,date,amount\na,2024-01-01,1\n\n\nb,2024-01-02,-2\n", "line 5: amount -2"),
        ("customer_id,date,amount\na,2024-01-01,1,2,3\nb,x,1\n", "line 2: more fields"),
    ],
)
def test_bad_input_names_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PurchaseFileInvalid, match=message):
        read_purchases(write(tmp_path, text))


def test_the_day_is_the_one_written_whatever_the_offset(tmp_path: Path) -> None:
    """A European export over a change to summer time mixes +01:00 and +02:00; a time
    just after midnight stays on its day (it is not moved to UTC's)."""
    path = write(
        tmp_path,
        "customer_id,date,amount\n"
        "a,2024-01-15T10:00:00+01:00,1\n"
        "a,2024-07-15T10:00:00+02:00,1\n"
        "a,2024-01-01T01:00:00+02:00,1\n"
        "b,2024-03-01T23:30:00Z,1\n"
        "b,2024-03-02,1\n",
    )
    frame = read_purchases(path)
    assert [d.date().isoformat() for d in frame["date"]] == [
        "2024-01-15",
        "2024-07-15",
        "2024-01-01",
        "2024-03-01",
        "2024-03-02",
    ]
