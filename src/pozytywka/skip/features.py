"""Skip features: training-period rates, genre match, the feature table and the skip score.

Rates come from the training period only: a training row gets the rate of the training rows in
the other folds, any other row (validation, test, a pair scored later) that of all training
rows. Both sides smooth towards the training skip share with the same formula.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
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
    """Whether the track's genres meet the user's favourite genres, per row: a (rows x genres)
    indicator of each side, built from each distinct track's and user's list once, and their
    row-wise product (no loop over rows, no per-row lists unpacked)."""
    track_codes, track_lists = _first_per_key(track_ids, track_genres)
    user_codes, user_lists = _first_per_key(user_ids, favourites)
    vocabulary = pd.Index(pd.concat([track_lists, user_lists]).unique())
    tracks = _indicator(track_lists, vocabulary, track_codes.max(initial=-1) + 1)[track_codes]
    users = _indicator(user_lists, vocabulary, user_codes.max(initial=-1) + 1)[user_codes]
    return np.asarray(tracks.multiply(users).sum(axis=1)).ravel() > 0


def _first_per_key(keys: pd.Series, lists: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Each row's key number, and the list of each key's first row exploded (indexed by key
    number; missing lists and entries dropped)."""
    codes, _ = pd.factorize(keys, use_na_sentinel=False)
    _, first = np.unique(codes, return_index=True)
    exploded = pd.Series(lists.to_numpy()[first], dtype=object).explode().dropna()
    return codes, exploded


def _indicator(exploded: pd.Series, vocabulary: pd.Index, n_keys: int) -> sp.csr_matrix:
    """(keys x vocabulary) 1 where a key's list holds the genre."""
    return sp.csr_matrix(
        (
            np.ones(len(exploded), dtype=np.float32),
            (exploded.index.to_numpy(), vocabulary.get_indexer(exploded.to_numpy())),
        ),
        shape=(n_keys, len(vocabulary)),
    )


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
    onehot = _per_user_rows(multi_hot(users["favourite_genres"], "fav_", genres), users, rows)
    return pd.concat(
        [rows.drop(columns=["genres", "favourite_genres", "artist_id"]), onehot], axis=1
    )


def _per_user_rows(table: pd.DataFrame, users: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``table`` (one row per row of ``users``) taken for each of ``rows`` by ``user_id``;
    zeros for a user ``users`` does not have."""
    position = pd.Index(users["user_id"]).get_indexer(rows["user_id"])
    padded = np.vstack([table.to_numpy(), np.zeros((1, table.shape[1]), table.to_numpy().dtype)])
    return pd.DataFrame(padded[position], index=rows.index, columns=table.columns)


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
