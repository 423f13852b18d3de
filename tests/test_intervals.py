"""Bootstrap intervals over users: the vectorised weighted metrics equal scikit-learn's, and the
intervals have the width the sampling distribution says."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pozytywka.intervals import (
    BinaryRows,
    calibration_metrics,
    confusion_metrics,
    memoised,
    rank_metrics,
    user_bootstrap,
    weighted_means,
    weighted_ratio,
)


@pytest.fixture
def rows():
    rng = np.random.default_rng(1)
    n = 600
    y = rng.random(n) < 0.35
    users = rng.integers(0, 45, n)
    score = np.round(rng.random(n) + 0.4 * y, 1)  # rounded: many ties
    return y, users, score, rng


def test_weighted_rank_metrics_equal_sklearn_with_row_weights(rows):
    y, users, score, rng = rows
    table = BinaryRows(y, users)
    pos, neg = table.score_levels(score)
    for _ in range(3):
        counts = rng.integers(0, 3, table.n_users).astype(float)  # one resample of users
        got = rank_metrics(counts @ pos.toarray(), counts @ neg.toarray())
        weight = counts[table.codes]
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y, score, sample_weight=weight))
        assert got["pr_auc"] == pytest.approx(
            average_precision_score(y, score, sample_weight=weight)
        )


def test_merged_score_levels_keep_the_order_and_equal_sklearn_on_the_merged_scores(rows):
    y, users, _, rng = rows
    score = rng.random(len(y)) + 0.4 * y  # every score distinct
    table = BinaryRows(y, users)
    exact = rank_metrics(*(m.sum(axis=0).A1 for m in table.score_levels(score)))
    pos, neg = table.score_levels(score, max_levels=40)
    assert pos.shape[1] == neg.shape[1] == 40
    assert pos.sum() == y.sum() and neg.sum() == (~y).sum()
    merged = rank_metrics(pos.sum(axis=0).A1, neg.sum(axis=0).A1)
    # Adjacent scores share a level: the same as scikit-learn on scores cut into 40 ranks.
    ranks = np.argsort(np.argsort(-score))  # 0 = best; all distinct here
    level_score = -(ranks * 40 // len(score))
    assert merged["roc_auc"] == pytest.approx(roc_auc_score(y, level_score))
    assert merged["roc_auc"] == pytest.approx(exact["roc_auc"], abs=1 / 40)
    assert merged["roc_auc"] != pytest.approx(exact["roc_auc"], abs=1e-9)  # merging is real
    unmerged = table.score_levels(score, max_levels=len(score))
    assert (unmerged[0] != table.score_levels(score)[0]).nnz == 0


def test_weighted_confusion_metrics_equal_sklearn(rows):
    y, users, score, rng = rows
    predicted = score > 0.6
    table = BinaryRows(y, users)
    counts = rng.integers(0, 3, table.n_users).astype(float)
    tn, fp, fn, tp = counts @ table.confusion(predicted).toarray()
    got = confusion_metrics(tn, fp, fn, tp)
    w = counts[table.codes]
    assert got["accuracy"] == pytest.approx(accuracy_score(y, predicted, sample_weight=w))
    assert got["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(y, predicted, sample_weight=w)
    )
    assert got["precision_skip"] == pytest.approx(precision_score(y, predicted, sample_weight=w))
    assert got["recall_listen"] == pytest.approx(recall_score(~y, ~predicted, sample_weight=w))
    assert got["f1_skip"] == pytest.approx(f1_score(y, predicted, sample_weight=w))


def test_mean_interval_has_the_width_of_the_sampling_distribution():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, 400)
    low, high = user_bootstrap(weighted_means(values), len(values), n_resamples=2000)[0]
    half_width = 1.96 * values.std() / np.sqrt(len(values))
    assert low < values.mean() < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_undefined_cells_are_left_out_and_ratios_are_micro_averages():
    values = np.array([[1.0, np.nan], [3.0, 4.0]])
    assert weighted_means(values)(np.ones((1, 2))).ravel().tolist() == [2.0, 4.0]
    # hits 1 of 2 and 2 of 2: 3 of 4 positives, not the mean of 0.5 and 1.0
    assert weighted_ratio(np.array([1, 2]), np.array([2, 2]))(np.ones((1, 2)))[0, 0] == 0.75
    # a user drawn twice counts twice
    assert weighted_means(np.array([1.0, 4.0]))(np.array([[2.0, 1.0]]))[0, 0] == 2.0


def test_paired_interval_of_a_constant_difference_is_that_constant():
    rng = np.random.default_rng(3)
    a = rng.random(100)
    low, high = user_bootstrap(weighted_means(a + 0.1 - a), 100, n_resamples=200)[0]
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_a_memoised_statistic_gives_the_same_interval_computing_each_batch_once():
    values = np.random.default_rng(4).random(80)
    plain = weighted_means(values)
    calls = []

    def counted(counts):
        calls.append(counts.shape)
        return plain(counts)

    cached = memoised(counted)
    args = {"n_resamples": 300, "batch": 100, "seed": 7}
    first = user_bootstrap(cached, 80, **args)
    n_calls = len(calls)
    again = user_bootstrap(cached, 80, **args)  # same seed: the same batches
    assert len(calls) == n_calls and n_calls == 4  # the probe and three batches of 100
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, user_bootstrap(plain, 80, **args))
    user_bootstrap(cached, 80, **{**args, "seed": 8})  # other resamples: computed afresh
    assert len(calls) > n_calls


def test_fewer_than_two_users_have_no_interval():
    assert np.isnan(user_bootstrap(weighted_means(np.array([1.0])), 1)).all()


def test_calibration_metrics_hand_case():
    y = np.array([True, False, True, False])
    p = np.array([0.9, 0.1, 0.4, 0.6])
    rows = BinaryRows(y, np.array([1, 1, 2, 2]))
    for bins, ece in [(10, (0.1 + 0.1 + 0.6 + 0.6) / 4), (2, (0.5 + 0.5) / 4)]:
        sums = np.asarray(rows.calibration_table(p, bins).sum(axis=0)).ravel()
        got = calibration_metrics(sums, bins)
        assert got["brier_score"] == pytest.approx((0.01 + 0.01 + 0.36 + 0.36) / 4)
        assert got["expected_calibration_error"] == pytest.approx(ece)
    # Resampling user 2 twice and user 1 not at all: only rows 3 and 4 count.
    sums = rows.calibration_table(p, 10).T @ np.array([[0.0, 2.0]]).T
    assert calibration_metrics(sums, 10)["brier_score"][0] == pytest.approx(0.36)
