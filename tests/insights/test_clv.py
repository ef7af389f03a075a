"""Lifetime value: the published CDNOW figures reproduced, the fit recovering the parameters
synthetic data were generated with, and the per-customer figures behaving as the model says.

The CDNOW sample ships inside the ``lifetimes`` wheel on PyPI; the test downloads the wheel
with pip into pytest's cache directory (once) and reads the file from the zip. No data is
committed."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from treu.insights import clv
from treu.insights.purchases import baskets
from treu.insights.synthetic import generate

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


@pytest.fixture(scope="module")
def cdnow(request: pytest.FixtureRequest) -> pd.DataFrame:
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


@pytest.fixture(scope="module")
def calibration(cdnow: pd.DataFrame) -> pd.DataFrame:
    return clv.summary(baskets(cdnow), calibration_end=date(1997, 9, 30), unit_days=7.0)


def test_cdnow_bgnbd_reproduces_fader_hardie_lee_2005(calibration: pd.DataFrame) -> None:
    assert len(calibration) == 2_357
    model = clv.fit_bgnbd(calibration)
    assert model.r == pytest.approx(0.243, rel=0.005)
    assert model.alpha == pytest.approx(4.414, rel=0.005)
    assert model.a == pytest.approx(0.793, rel=0.005)
    assert model.b == pytest.approx(2.426, rel=0.005)
    assert model.log_likelihood == pytest.approx(-9582.4, rel=0.005)
    # the worked example of Fader, Hardie & Lee's note "Implementing the BG/NBD model in
    # Excel": x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in the next 39 weeks
    assert model.expected_purchases(39, 2, 30.43, 38.86)[()] == pytest.approx(1.226, abs=0.001)


def test_cdnow_gamma_gamma_reproduces_fader_hardie_2013(calibration: pd.DataFrame) -> None:
    model = clv.fit_gamma_gamma(calibration)
    assert model.p == pytest.approx(6.25, rel=0.01)
    assert model.q == pytest.approx(3.74, rel=0.01)
    assert model.gamma == pytest.approx(15.44, rel=0.01)


def test_cdnow_holdout_is_forecast_in_the_right_range(
    cdnow: pd.DataFrame, calibration: pd.DataFrame
) -> None:
    """The 39 weeks after calibration: the sum of the conditional expectations is close to
    the purchases made (BG/NBD's tracking on CDNOW is good, not exact)."""
    model = clv.fit_bgnbd(calibration)
    merged = baskets(cdnow)
    holdout = merged[merged["date"] > pd.Timestamp(1997, 9, 30)]
    expected = model.expected_purchases(
        39.0, calibration["frequency"], calibration["recency"], calibration["T"]
    )
    assert expected.sum() == pytest.approx(len(holdout), rel=0.15)
    # and it ranks: customers expected to buy more do buy more
    actual = holdout.groupby("customer_id").size().reindex(calibration.index, fill_value=0)
    top = expected >= np.quantile(expected, 0.9)
    assert actual[top].mean() > 4 * actual[~top].mean()


def test_summary_follows_lifetimes_conventions() -> None:
    lines = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "c"],
            "date": pd.to_datetime(
                [
                    "2024-01-01",
                    "2024-01-01",
                    "2024-01-08",
                    "2024-01-22",
                    "2024-01-15",
                    "2024-02-01",
                ]
            ),
            "amount": [5.0, 5.0, 20.0, 40.0, 7.0, 1.0],
        }
    )
    summary = clv.summary(lines, calibration_end=date(2024, 1, 29), unit_days=7.0)
    assert list(summary.index) == ["a", "b"]  # c first bought after the calibration end
    a, b = summary.loc["a"], summary.loc["b"]
    assert a["frequency"] == 2  # two days with purchases after the first (lines merged)
    assert a["recency"] == pytest.approx(3.0)  # 21 days
    assert a["T"] == pytest.approx(4.0)  # 28 days to the calibration end
    assert a["monetary_value"] == pytest.approx(30.0)  # mean of the repeat purchases
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0.0, 2.0, 0.0)
    in_days = clv.summary(lines, calibration_end=date(2024, 1, 29), unit_days=1.0)
    assert in_days.loc["a", "T"] == pytest.approx(28.0)
    assert in_days.attrs["unit_days"] == 1.0
    default_end = clv.summary(lines)
    assert default_end.loc["a", "T"] == pytest.approx(31 / 7)


@pytest.mark.parametrize("seed", [1, 2])
def test_synthetic_parameters_are_recovered(seed: int) -> None:
    """Data generated by the BG/NBD and Gamma-Gamma story with known parameters, ~20k
    customers over three years: the fit finds them (tolerances ~3 sampling errors, plus
    the rounding of moments to days)."""
    truth = {"r": 0.4, "alpha": 6.0, "a": 0.9, "b": 3.0, "p": 5.0, "q": 4.0, "gamma": 12.0}
    data = generate(
        20_000, start=date(2021, 1, 1), end=date(2023, 12, 31), seed=seed, items=50, **truth
    )
    summary = clv.summary(baskets(data))
    model = clv.fit_bgnbd(summary)
    assert model.r == pytest.approx(truth["r"], rel=0.12)
    assert model.alpha == pytest.approx(truth["alpha"], rel=0.12)
    assert model.a == pytest.approx(truth["a"], rel=0.12)
    assert model.b == pytest.approx(truth["b"], rel=0.15)
    spend = clv.fit_gamma_gamma(summary)
    assert spend.p == pytest.approx(truth["p"], rel=0.15)
    assert spend.q == pytest.approx(truth["q"], rel=0.15)
    assert spend.gamma == pytest.approx(truth["gamma"], rel=0.2)


def test_gradients_match_finite_differences(calibration: pd.DataFrame) -> None:
    grouped = clv._group(calibration)
    total = float(grouped.weight.sum())
    for point in ([-1.2, 1.5, -0.2, 0.9], [0.3, 0.1, 0.5, -0.5]):
        error = optimize.check_grad(
            lambda v: clv._bgnbd_negative_ll(v, grouped, total)[0],
            lambda v: clv._bgnbd_negative_ll(v, grouped, total)[1],
            np.array(point),
        )
        assert error < 1e-5
    used = calibration[calibration["frequency"] > 0]
    x = used["frequency"].to_numpy(float)
    m = used["monetary_value"].to_numpy(float)
    args = (x, m, np.log(m), np.log(x))
    error = optimize.check_grad(
        lambda v: clv._gg_negative_ll(v, *args)[0],
        lambda v: clv._gg_negative_ll(v, *args)[1],
        np.array([1.5, 1.2, 2.7]),
    )
    assert error < 1e-5


def test_p_alive_and_expectations_behave() -> None:
    model = clv.BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=0.0)
    # no repeat purchase: BG/NBD lets nobody drop out yet
    assert model.p_alive(0, 0, 30)[()] == 1.0
    # the longer the silence since the last purchase, the less likely alive
    silence = model.p_alive(np.full(4, 5.0), np.array([30.0, 20.0, 10.0, 1.0]), np.full(4, 30.0))
    assert np.all(np.diff(silence) < 0)
    # a busier recent history expects more, and more with a longer horizon
    busy = model.expected_purchases(52, 10, 29, 30)[()]
    quiet = model.expected_purchases(52, 1, 29, 30)[()]
    assert busy > quiet > 0
    assert model.expected_purchases(13, 10, 29, 30)[()] < busy
    spend = clv.GammaGamma(p=6.25, q=3.74, gamma=15.44, log_likelihood=0.0)
    # one purchase barely moves the estimate off the population mean; many do
    assert spend.expected_spend(0, 0)[()] == pytest.approx(spend.mean_spend)
    one, many = spend.expected_spend([1, 50], [100.0, 100.0])
    assert spend.mean_spend < one < many < 100.0
    assert many > 95.0


def test_customer_values_per_customer(calibration: pd.DataFrame) -> None:
    bgnbd = clv.fit_bgnbd(calibration)
    gg = clv.fit_gamma_gamma(calibration)
    values = clv.customer_values(calibration, bgnbd, gg)
    assert values.index.equals(calibration.index)
    direct = bgnbd.expected_purchases(
        365 / 7, calibration["frequency"], calibration["recency"], calibration["T"]
    )
    np.testing.assert_allclose(values["expected_purchases_365"], direct)
    assert (values["expected_purchases_90"] < values["expected_purchases_365"]).all()
    np.testing.assert_allclose(
        values["clv_365"], values["expected_purchases_365"] * values["expected_spend"]
    )
    assert values["p_alive"].between(0, 1).all()


def test_too_little_data_is_a_readable_error() -> None:
    one_each = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "date": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "amount": [1.0, 2.0],
        }
    )
    summary = clv.summary(one_each)
    with pytest.raises(clv.CannotFit, match="repeat"):
        clv.fit_bgnbd(summary)
    with pytest.raises(clv.CannotFit, match="repeat"):
        clv.fit_gamma_gamma(summary)
    with pytest.raises(clv.CannotFit, match="no purchases"):
        clv.summary(one_each, calibration_end=date(2023, 1, 1))
