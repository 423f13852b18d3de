"""The generator's hidden truth: the one home of its formulas, used by the generator to draw
outcomes and by the oracle evaluation to score with them. Training never reads these."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit


def _factors(frame: pd.DataFrame, n_factors: int) -> np.ndarray:
    return frame[[f"f{i}" for i in range(n_factors)]].to_numpy(dtype=np.float64)


def _aligned(
    user_truth: pd.DataFrame, track_truth: pd.DataFrame, params: dict, user_ids, track_ids
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user factors, track factors, track quality) of the listed ids, in their order."""
    u = user_truth.set_index("user_id").loc[np.asarray(user_ids)]
    t = track_truth.set_index("track_id").loc[np.asarray(track_ids)]
    d = params["n_factors"]
    return _factors(u, d), _factors(t, d), t["quality"].to_numpy()


def _standardised(dots: np.ndarray, quality: np.ndarray, params: dict) -> np.ndarray:
    scaled = dots / np.sqrt(params["n_factors"]) / params["dot_scale"]
    return (scaled + quality - params["affinity_mean"]) / params["affinity_std"]


def affinity(
    user_truth: pd.DataFrame, track_truth: pd.DataFrame, params: dict, user_ids, track_ids
) -> np.ndarray:
    """Standardised true affinity of each (user_ids[i], track_ids[i]) pair."""
    u, t, quality = _aligned(user_truth, track_truth, params, user_ids, track_ids)
    return _standardised((u * t).sum(axis=1), quality, params)


def affinity_matrix(
    user_truth: pd.DataFrame, track_truth: pd.DataFrame, params: dict, user_ids, track_ids
) -> np.ndarray:
    """True affinity of every listed user (rows) to every listed track (columns)."""
    u, t, quality = _aligned(user_truth, track_truth, params, user_ids, track_ids)
    return _standardised(u @ t.T, quality[None, :], params)


def skip_probability_of(
    affinity: np.ndarray, skip_bias: float | np.ndarray, alpha_skip: float, outcome_signal: float
) -> np.ndarray:
    """The generator's skip formula: P(skip | play) from the true affinity and the user's
    skip bias."""
    return expit(alpha_skip + (skip_bias - outcome_signal * affinity))


def like_if_listened(affinity: np.ndarray, alpha_like: float, outcome_signal: float) -> np.ndarray:
    """The generator's like formula: P(like | play, not skipped)."""
    return expit(alpha_like + outcome_signal * affinity)


def outcome_probabilities(
    user_factors: np.ndarray,
    skip_bias: float | np.ndarray,
    track_factors: np.ndarray,
    quality: np.ndarray,
    params: dict,
) -> tuple[np.ndarray, np.ndarray]:
    """(P(skip | play), P(like)) of one user's factors and skip bias against tracks' factors
    and quality: the formulas above on arrays, for callers that ask many times (the
    simulated listeners)."""
    a = _standardised(track_factors @ user_factors, quality, params)
    s = params["outcome_signal"]
    p_skip = skip_probability_of(a, skip_bias, params["alpha_skip"], s)
    return p_skip, (1 - p_skip) * like_if_listened(a, params["alpha_like"], s)


def _skip_bias(user_truth: pd.DataFrame, user_ids) -> np.ndarray:
    return user_truth.set_index("user_id").loc[np.asarray(user_ids), "skip_bias"].to_numpy()


def skip_probability(user_truth, track_truth, params, user_ids, track_ids) -> np.ndarray:
    """True probability that the user skips the track once it plays."""
    a = affinity(user_truth, track_truth, params, user_ids, track_ids)
    return skip_probability_of(
        a, _skip_bias(user_truth, user_ids), params["alpha_skip"], params["outcome_signal"]
    )


def like_probability(user_truth, track_truth, params, user_ids, track_ids) -> np.ndarray:
    """True probability that a play of the track by the user ends in a like (not skipped)."""
    a = affinity(user_truth, track_truth, params, user_ids, track_ids)
    p_skip = skip_probability_of(
        a, _skip_bias(user_truth, user_ids), params["alpha_skip"], params["outcome_signal"]
    )
    return (1 - p_skip) * like_if_listened(a, params["alpha_like"], params["outcome_signal"])


def like_probability_from_affinity(
    user_truth: pd.DataFrame, params: dict, user_ids, affinity_rows: np.ndarray
) -> np.ndarray:
    """``like_probability`` for rows of an ``affinity_matrix`` (users x tracks)."""
    s = params["outcome_signal"]
    bias = _skip_bias(user_truth, user_ids)[:, None]
    p_skip = skip_probability_of(affinity_rows, bias, params["alpha_skip"], s)
    return (1 - p_skip) * like_if_listened(affinity_rows, params["alpha_like"], s)
