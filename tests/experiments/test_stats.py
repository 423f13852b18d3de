"""Two-arm statistics checked against hand computations and scipy / scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score

from pozytywka.experiments import stats
from pozytywka.experiments.report import build_report


def test_welch_difference_interval_and_p_value():
    base = np.array([0.1, 0.2, 0.3, 0.4])
    advanced = np.array([0.3, 0.5, 0.4, 0.6, 0.7])
    out = stats.compare_arms(base, advanced, n_resamples=200)
    scipy = sps.ttest_ind(advanced, base, equal_var=False)
    d = out["difference"]
    assert d["estimate"] == pytest.approx(0.5 - 0.25)
    assert d["p_value"] == pytest.approx(scipy.pvalue)
    # Welch's interval by hand: estimate +- t(df) * standard error
    se = np.sqrt(base.var(ddof=1) / 4 + advanced.var(ddof=1) / 5)
    df = se**4 / ((base.var(ddof=1) / 4) ** 2 / 3 + (advanced.var(ddof=1) / 5) ** 2 / 4)
    half = sps.t.ppf(0.975, df) * se
    assert d["interval"] == pytest.approx([0.25 - half, 0.25 + half])
    assert out["relative_lift"]["estimate"] == pytest.approx(0.5 / 0.25 - 1)
    assert out["arms"]["base"]["interval"] == pytest.approx(
        list(sps.t.interval(0.95, 3, loc=0.25, scale=base.std(ddof=1) / 2))
    )


def test_minimum_detectable_effect_has_the_asked_power():
    rng = np.random.default_rng(1)
    base, advanced = rng.normal(0.2, 0.1, 400), rng.normal(0.2, 0.1, 600)
    power = stats.compare_arms(base, advanced, n_resamples=100)["power"]
    sd = power["pooled_sd"]
    # normal approximation: (z_0.975 + z_0.8) * sd * sqrt(1/n1 + 1/n2)
    approx = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sd * np.sqrt(1 / 400 + 1 / 600)
    assert power["minimum_detectable_effect"] == pytest.approx(approx, rel=0.01)
    # 5% of a 0.2 mean with sd 0.1: d = 0.1, about 1,571 users per arm
    assert power["users_per_arm_for_target"] == pytest.approx(
        2 * (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) ** 2 / (0.05 * base.mean() / sd) ** 2,
        rel=0.01,
    )


def test_too_few_users_are_not_compared():
    out = stats.compare_arms(np.array([0.1]), np.array([0.2, 0.3]))
    assert out["comparable"] is False and "difference" not in out


def test_sample_ratio_mismatch():
    half = {"base": 0.5, "advanced": 0.5}
    fair = stats.sample_ratio({"base": 505, "advanced": 495}, half)
    skewed = stats.sample_ratio({"base": 420, "advanced": 580}, half)
    assert fair["passed"] is True and fair["p_value"] == pytest.approx(
        sps.chisquare([505, 495]).pvalue
    )
    assert skewed["passed"] is False and skewed["chi2"] == pytest.approx(80**2 / 500 * 2)


def test_pooled_figures_are_scikit_learns_and_differences_have_intervals():
    rng = np.random.default_rng(3)
    arms = {}
    for arm, noise in (("base", 0.45), ("advanced", 0.1)):
        users = np.repeat(np.arange(60), 10)
        p = rng.random(600)
        y = rng.random(600) < p
        q = np.clip(p + rng.normal(0, noise, 600), 0, 1)
        arms[arm] = {"y": y, "user": users, "predicted": q > 0.5, "probability": q}
    out = stats.compare_pooled(arms, n_resamples=300)
    for arm, data in arms.items():
        balanced = out["balanced_accuracy"]["arms"][arm]
        assert balanced["mean"] == pytest.approx(
            balanced_accuracy_score(data["y"], data["predicted"])
        )
        low, high = balanced["interval"]
        assert low < balanced["mean"] < high
    d = out["balanced_accuracy"]["difference"]
    assert d["estimate"] > 0 and d["interval"][0] > 0 and d["p_value"] < 0.01


def _frames(n_users: int, lift: float, seed: int):
    """A playlists experiment of ``n_users`` whose advanced arm likes ``lift`` more often."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for user in range(n_users):
        arm = "advanced" if user % 2 else "base"
        p = {"base": 0.2, "advanced": 0.2 + lift}
        for answer in range(3):
            liked = rng.random(10) < p[arm]
            for i in range(10):
                rows.append(
                    {
                        "answer_id": user * 10 + answer,
                        "answered_at": pd.Timestamp("2026-12-01", tz="UTC")
                        + pd.Timedelta(user * 3 + answer, "s"),
                        "experiment": "playlists",
                        "variant": arm,
                        "forced": False,
                        "user_id": user,
                        "track_id": f"t{i}",
                        "played": True,
                        "skipped": False,
                        "liked": bool(liked[i]),
                    }
                )
            truth.append(
                {"experiment": "playlists", "user_id": user, "variant": arm}
                | {f"{k}_{a}": v for a in p for k, v in _expected(p[a]).items()}
            )
    served = pd.DataFrame(rows)
    answered = served.drop_duplicates("answer_id")[
        ["answer_id", "answered_at", "experiment", "variant", "forced", "user_id"]
    ].assign(status=200)
    return answered, served, pd.DataFrame(truth)


def _expected(p: float) -> dict:
    return {
        "served": 10.0,
        "played": 10.0,
        "skipped": 0.0,
        "liked": 10 * p,
        "hit": 1 - (1 - p) ** 10,
    }


def _params() -> dict:
    return {
        "attribution": {"window": "30min"},
        "assignment": {"expected_split": {"base": 0.5, "advanced": 0.5}, "srm_alpha": 0.001},
        "statistics": {
            "alpha": 0.05,
            "power": 0.8,
            "target_relative_lift": 0.05,
            "n_resamples": 200,
            "seed": 0,
            "cumulative_points": 4,
        },
        "headline": {"playlists": "like_rate", "skip_predictions": "accuracy"},
    }


def test_report_puts_the_true_difference_beside_the_estimate():
    answered, served, truth = _frames(200, 0.05, seed=0)
    empty_skips = pd.DataFrame(columns=[*answered.columns, "labelled"])
    report = build_report(answered, served, empty_skips.iloc[0:0], truth, _params())
    section = report["experiments"]["playlists"]
    like = section["metrics"]["like_rate"]
    assert like["truth"]["difference"] == pytest.approx(0.05)
    assert like["truth"]["interval_covers_truth"] == (
        like["difference"]["interval"][0] <= 0.05 <= like["difference"]["interval"][1]
    )
    assert section["assignment"]["passed"] is True
    assert len(section["cumulative"]) == 4 and section["cumulative"][-1]["users"] == 200
    assert section["cumulative"][-1]["estimate"] == pytest.approx(like["difference"]["estimate"])
    assert report["answers"]["playlists"]["base"]["users"] == 100
