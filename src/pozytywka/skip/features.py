"""Skip features: training-period rates, genre match, the feature table and the skip score.

Rates come from the training period only: a training row gets the rate of the training rows in
the other folds, any other row (validation, test, a pair scored later) that of all training
rows. Both sides smooth towards the training skip share with the same formula.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from pozytywka.contract import NUMERIC_TRACK_FEATURES
from pozytywka.recsys.encoding import multi_hot

TRACK_NUMERIC = [*NUMERIC_TRACK_FEATURES, "key"]
# Per-track model inputs, in this order: the numeric fields and the explicit flag.
TRACK_FEATURES = [*TRACK_NUMERIC, "explicit"]
RATE_FEATURES = ["user_skip_rate", "track_skip_rate", "user_train_rows", "track_train_rows"]


# ---- rates -----------------------------------------------------------------------------------


def training_counts(
    train_rows: pd.DataFrame, key: str, keys: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Skips and rows of each ``keys`` value in the training rows (0 for unseen values)."""
    total = train_rows.groupby(key)["skipped"].agg(["sum", "count"])
    return (
        keys.map(total["sum"]).fillna(0).to_numpy(dtype=float, copy=True),
        keys.map(total["count"]).fillna(0).to_numpy(dtype=float, copy=True),
    )


def smoothed_rate(skips, count, smoothing: float, global_rate: float):
    """``(skips + smoothing * global_rate) / (count + smoothing)``: the observed skip share
    pulled towards the global one, the more the fewer rows (arrays or scalars)."""
    return (skips + smoothing * global_rate) / (count + smoothing)


def out_of_fold_rates(
    rows: pd.DataFrame,
    key: str,
    train: pd.Series,
    fold: np.ndarray,
    smoothing: float,
    global_rate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Skip rate of each row's ``key`` from training rows, out of fold, and its row count.

    A training row in fold k gets the rate of the training rows in the other folds; other rows
    get the rate of all training rows. No row's rate depends on its own label (leave-one-out
    would: within a user, a skipped row would see a lower rate than a listened one, which a
    tree learns and which does not carry over to new rows).
    """
    t = rows[train]
    skips, count = training_counts(t, key, rows[key])
    in_fold = t.groupby([key, fold[train.to_numpy()]])["skipped"].agg(["sum", "count"])
    own = train.to_numpy()
    index = pd.MultiIndex.from_arrays([rows.loc[own, key], fold[own]])
    skips[own] -= in_fold["sum"].reindex(index).to_numpy()
    count[own] -= in_fold["count"].reindex(index).to_numpy()
    return smoothed_rate(skips, count, smoothing, global_rate), count


# ---- features --------------------------------------------------------------------------------


def genre_match(
    user_ids: pd.Series, track_ids: pd.Series, track_genres: pd.Series, favourites: pd.Series
) -> np.ndarray:
    """Whether the track's genres meet the user's favourite genres, per row (vectorised by
    joining exploded (pair, genre) tables, not a loop over rows)."""
    pairs = pd.DataFrame({"u": user_ids.to_numpy(), "t": track_ids.to_numpy()})
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(pairs))
    first = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
    tg = (
        pd.DataFrame({"pair": np.arange(len(uniques)), "genre": track_genres.to_numpy()[first]})
        .explode("genre")
        .dropna()
    )
    fg = (
        pd.DataFrame({"pair": np.arange(len(uniques)), "genre": favourites.to_numpy()[first]})
        .explode("genre")
        .dropna()
    )
    matched = np.zeros(len(uniques), dtype=bool)
    matched[tg.merge(fg, on=["pair", "genre"])["pair"].unique()] = True
    return matched[codes]


def attach_features(
    rows: pd.DataFrame,
    tracks: pd.DataFrame,
    artists: pd.DataFrame,
    users: pd.DataFrame,
    genres: list[str],
) -> pd.DataFrame:
    """Track features, premium flag, genre match and favourite-genre indicators for
    (user_id, track_id) rows."""
    track_info = tracks[["track_id", "artist_id", *TRACK_FEATURES]].merge(
        artists[["artist_id", "genres"]], on="artist_id", how="left"
    )
    rows = rows.merge(track_info, on="track_id", how="left", validate="many_to_one")
    rows = rows.merge(
        users[["user_id", "premium_user", "favourite_genres"]],
        on="user_id",
        how="left",
        validate="many_to_one",
    )
    rows["genre_match"] = genre_match(
        rows["user_id"], rows["track_id"], rows["genres"], rows["favourite_genres"]
    )
    for c in [*TRACK_FEATURES, "premium_user"]:
        rows[c] = rows[c].astype("float64")
    onehot = multi_hot(rows["favourite_genres"], "fav_", genres)
    return pd.concat(
        [rows.drop(columns=["genres", "favourite_genres", "artist_id"]), onehot], axis=1
    )


def _candidate_columns(dataset: pd.DataFrame) -> list[str]:
    fav = [c for c in dataset.columns if c.startswith("fav_")]
    return [*TRACK_FEATURES, "premium_user", "genre_match", *RATE_FEATURES, *fav]


def unobserved_features(dataset: pd.DataFrame) -> list[str]:
    """Feature columns with no value at all in the training split (an export whose tracks
    carry no audio features, say): nothing can be learned from them, so no model uses them.
    A table without a ``split`` column counts as training rows."""
    train = dataset[dataset["split"] == "train"] if "split" in dataset else dataset
    return [c for c in _candidate_columns(dataset) if not train[c].notna().any()]


def feature_columns(dataset: pd.DataFrame) -> list[str]:
    """The model's inputs, in order: track features, premium flag, genre match, rates and the
    ``fav_`` indicators present in ``dataset``, less those ``unobserved_features`` lists."""
    unobserved = set(unobserved_features(dataset))
    return [c for c in _candidate_columns(dataset) if c not in unobserved]


# ---- models ----------------------------------------------------------------------------------


def baseline_rule(dataset: pd.DataFrame) -> np.ndarray:
    """Skip when the track's genres do not meet the user's favourite genres."""
    return ~dataset["genre_match"].to_numpy(dtype=bool)


def skip_score(model, x: pd.DataFrame) -> np.ndarray:
    """A continuous skip score: probability where the model has one, else decision value."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(x)[:, 1]
    return model.decision_function(x)


def calibrate(model, x: pd.DataFrame, y: pd.Series, method: str) -> CalibratedClassifierCV:
    """``model`` (fitted, left as it is) with its probabilities mapped onto the skip shares
    observed in ``x``, ``y``: a held-out period the model never saw."""
    if y.nunique() < 2:
        raise ValueError(
            "the validation period holds one class only: the skip model cannot be calibrated; "
            "enlarge skip_prediction.dataset.split.validation_size"
        )
    return CalibratedClassifierCV(FrozenEstimator(model), method=method).fit(x, y)


def uncalibrated(model):
    """The fitted model inside a ``calibrate``d one (the model itself otherwise)."""
    if isinstance(model, CalibratedClassifierCV):
        inner = model.calibrated_classifiers_[0].estimator
        return inner.estimator if isinstance(inner, FrozenEstimator) else inner
    return model
