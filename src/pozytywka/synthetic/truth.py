"""The generator's hidden truth as scorers, for oracle metrics. Training never reads these."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _factors(frame: pd.DataFrame, n_factors: int) -> np.ndarray:
    return frame[[f"f{i}" for i in range(n_factors)]].to_numpy(dtype=np.float64)


def affinity(
    user_truth: pd.DataFrame, track_truth: pd.DataFrame, params: dict, user_ids, track_ids
) -> np.ndarray:
    """Standardised true affinity of each (user_ids[i], track_ids[i]) pair."""
    u = user_truth.set_index("user_id").loc[np.asarray(user_ids)]
    t = track_truth.set_index("track_id").loc[np.asarray(track_ids)]
    d = params["n_factors"]
    dots = (_factors(u, d) * _factors(t, d)).sum(axis=1) / np.sqrt(d) / params["dot_scale"]
    return (dots + t["quality"].to_numpy() - params["affinity_mean"]) / params["affinity_std"]


def affinity_matrix(
    user_truth: pd.DataFrame, track_truth: pd.DataFrame, params: dict, user_ids, track_ids
) -> np.ndarray:
    """True affinity of every listed user (rows) to every listed track (columns)."""
    u = user_truth.set_index("user_id").loc[np.asarray(user_ids)]
    t = track_truth.set_index("track_id").loc[np.asarray(track_ids)]
    d = params["n_factors"]
    dots = _factors(u, d) @ _factors(t, d).T / np.sqrt(d) / params["dot_scale"]
    return (dots + t["quality"].to_numpy()[None, :] - params["affinity_mean"]) / params[
        "affinity_std"
    ]


def skip_probability(user_truth, track_truth, params, user_ids, track_ids) -> np.ndarray:
    """True probability that the user skips the track once it plays."""
    a = affinity(user_truth, track_truth, params, user_ids, track_ids)
    bias = user_truth.set_index("user_id").loc[np.asarray(user_ids), "skip_bias"].to_numpy()
    return 1 / (1 + np.exp(-(params["alpha_skip"] + bias - params["outcome_signal"] * a)))


def like_probability(user_truth, track_truth, params, user_ids, track_ids) -> np.ndarray:
    """True probability that a play of the track by the user ends in a like (not skipped)."""
    a = affinity(user_truth, track_truth, params, user_ids, track_ids)
    p_like = 1 / (1 + np.exp(-(params["alpha_like"] + params["outcome_signal"] * a)))
    return (1 - skip_probability(user_truth, track_truth, params, user_ids, track_ids)) * p_like


def like_probability_from_affinity(
    user_truth: pd.DataFrame, params: dict, user_ids, affinity_rows: np.ndarray
) -> np.ndarray:
    """``like_probability`` for rows of an ``affinity_matrix`` (users x tracks)."""
    bias = user_truth.set_index("user_id").loc[np.asarray(user_ids), "skip_bias"].to_numpy()
    s = params["outcome_signal"]
    p_skip = 1 / (1 + np.exp(-(params["alpha_skip"] + bias[:, None] - s * affinity_rows)))
    return (1 - p_skip) / (1 + np.exp(-(params["alpha_like"] + s * affinity_rows)))
