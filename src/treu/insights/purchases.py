"""Purchase files for the analyst commands (``treu insights …``): a CSV export with the
columns ``customer_id,date,amount[,item]`` that never went through Treu.

One row is a purchase line or a whole purchase. ``read_purchases`` returns a pandas frame
(``customer_id`` str, ``date`` day as ``datetime64``, ``amount`` float in the currency's
major unit, ``item`` str when the file has it); ``baskets`` merges the rows of one customer
on one day into one purchase, as BG/NBD and Gamma-Gamma count them. Bad input raises
``PurchaseFileInvalid`` naming the line (the header is line 1), and nothing is read.
Everything is vectorised: a file of 20M rows is one ``read_csv`` and a few column operations.
"""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from treu.errors import Invalid

REQUIRED = ("customer_id", "date", "amount")
OPTIONAL = ("item",)


class PurchaseFileInvalid(Invalid):
    code = "purchase_file_invalid"
    title = "Purchase file invalid"


_DAY = r"^\d{4}-\d{2}-\d{2}(?:[T ].*)?$"
"""A date, with a time and an offset or not: the first ten characters are the day."""


def read_purchases(path: str | Path, *, until: date | None = None) -> pd.DataFrame:
    """Read and check a purchase file; with ``until``, keep only the rows dated on or
    before it (the check covers the whole file either way)."""
    name = Path(path).name
    try:
        with warnings.catch_warnings():
            # pandas warns (instead of failing) when the first row has more fields than
            # the header: refused like any other row that does.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                skip_blank_lines=False,  # rows keep their line numbers (blanks go below)
                index_col=False,  # a row with too many fields must not shift the columns
                engine="c",
            )
    except FileNotFoundError:
        raise PurchaseFileInvalid(f"{name}: no such file.") from None
    except pd.errors.EmptyDataError:
        raise PurchaseFileInvalid(
            f"{name}: the file is empty; it needs the header customer_id,date,amount[,item]."
        ) from None
    except pd.errors.ParserWarning:
        raise PurchaseFileInvalid(
            f"{name}, line 2: more fields than the header has columns."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PurchaseFileInvalid(f"{name}: not a readable CSV file ({exc}).") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise PurchaseFileInvalid(
            f"{name}: the header has no column {', '.join(repr(c) for c in missing)} "
            f"(it needs customer_id,date,amount[,item]; it has {','.join(frame.columns)})."
        )
    keep = [c for c in (*REQUIRED, *OPTIONAL) if c in frame.columns]
    # The file line of each row (header = line 1; a quoted field over several lines
    # still counts as one), then the blank lines go.
    numbers = np.arange(len(frame)) + 2
    blank = (frame.fillna("").astype(str).apply(lambda c: c.str.strip()) == "").all(axis=1)
    frame = frame.loc[~blank.to_numpy(), keep].reset_index(drop=True)
    numbers = numbers[~blank.to_numpy()]

    def _line(position: int) -> int:
        return int(numbers[position])

    customer = frame["customer_id"].str.strip()
    empty = np.flatnonzero((customer == "").to_numpy())
    if empty.size:
        raise PurchaseFileInvalid(f"{name}, line {_line(int(empty[0]))}: customer_id is empty.")

    # The day as written: a time and its offset (which may change with daylight saving
    # within one file) do not move a purchase to another day.
    raw_dates = frame["date"].str.strip()
    written = raw_dates.where(raw_dates.str.match(_DAY), "").str.slice(0, 10)
    dates = pd.to_datetime(written, format="%Y-%m-%d", errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if bad.size:
        first = int(bad[0])
        raise PurchaseFileInvalid(
            f"{name}, line {_line(first)}: date {raw_dates.iloc[first]!r} is not a date "
            "(YYYY-MM-DD)."
        )
    days = dates

    raw_amounts = frame["amount"].str.strip()
    amounts = pd.to_numeric(raw_amounts, errors="coerce")
    bad = np.flatnonzero((amounts.isna() | ~np.isfinite(amounts)).to_numpy())
    if bad.size:
        first = int(bad[0])
        raise PurchaseFileInvalid(
            f"{name}, line {_line(first)}: amount {raw_amounts.iloc[first]!r} is not a number."
        )
    negative = np.flatnonzero((amounts < 0).to_numpy())
    if negative.size:
        first = int(negative[0])
        raise PurchaseFileInvalid(
            f"{name}, line {_line(first)}: amount {raw_amounts.iloc[first]} is negative "
            "(returns belong in the purchase they reduce)."
        )

    out = pd.DataFrame({"customer_id": customer, "date": days, "amount": amounts.astype("float64")})
    if "item" in frame.columns:
        out["item"] = frame["item"].str.strip()
    if until is not None:
        out = out[out["date"] <= pd.Timestamp(until)]
    return out.reset_index(drop=True)


def baskets(purchases: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and day (``customer_id``, ``date``, ``amount`` summed): the
    purchases BG/NBD and Gamma-Gamma count."""
    return (
        purchases.groupby(["customer_id", "date"], sort=True, observed=True)["amount"]
        .sum()
        .reset_index()
    )
