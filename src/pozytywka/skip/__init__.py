"""Skip features and rates: the library the skip_prediction pipeline and the service share.

Training-period counts and smoothed skip rates (out of fold for training rows), genre match,
the feature table and its column order, the genre rule, the model's skip score and its
calibration. Imports neither ``pozytywka.pipelines`` nor ``pozytywka.serving``.
"""

from .features import (
    RATE_FEATURES,
    TRACK_FEATURES,
    TRACK_NUMERIC,
    attach_features,
    baseline_rule,
    calibrate,
    feature_columns,
    genre_match,
    out_of_fold_rates,
    skip_score,
    smoothed_rate,
    training_counts,
    uncalibrated,
    unobserved_features,
)

__all__ = [
    "RATE_FEATURES",
    "TRACK_FEATURES",
    "TRACK_NUMERIC",
    "attach_features",
    "baseline_rule",
    "calibrate",
    "feature_columns",
    "genre_match",
    "out_of_fold_rates",
    "skip_score",
    "smoothed_rate",
    "training_counts",
    "uncalibrated",
    "unobserved_features",
]
