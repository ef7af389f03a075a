"""The CDNOW sample (Fader, Hardie & Lee 2005) as purchase lines, read from the ``lifetimes``
wheel on PyPI: downloaded with pip into pytest's cache directory once, never committed."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

WHEEL = "lifetimes==0.11.3"
CDNOW = "lifetimes/datasets/CDNOW_sample.txt"


def lifetimes_wheel(cache: pytest.Cache) -> Path:
    folder = cache.mkdir("lifetimes-wheel")
    found = sorted(folder.glob("*.whl"))
    if not found:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                WHEEL,
                "-d",
                str(folder),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        found = sorted(folder.glob("*.whl"))
        if done.returncode != 0 or not found:
            pytest.fail(f"could not download {WHEEL} from PyPI for the CDNOW sample: {done.stderr}")
    return found[0]


def cdnow_lines(request: pytest.FixtureRequest) -> pd.DataFrame:
    """The CDNOW sample as purchase lines: customer, day, dollar value."""
    with zipfile.ZipFile(lifetimes_wheel(request.config.cache)) as wheel:
        text = wheel.read(CDNOW)
    raw = pd.read_csv(
        io.BytesIO(text),
        sep=r"\s+",
        header=None,
        names=["customer_id", "master_id", "date", "cds", "amount"],
        dtype={"customer_id": str, "date": str},
    )
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "date": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["amount"].astype(float),
        }
    )
