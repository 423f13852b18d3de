"""Nodes of feature_engineering: de-duplicated listening rows, split, rates, features, matrices.

Everything learned from data (skip rates, imputation medians, scalers) is fit on the training
rows only; test rows are transformed with what training learned.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm.data import Dataset
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pozytywka.contract import NUMERIC_TRACK_FEATURES
from pozytywka.recsys.encoding import label_pairs, multi_hot, pairs_matrix
from pozytywka.tracking import mlflow_metrics

logger = logging.getLogger(__name__)


def build_session_tracks(events: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """One row per (session, track): played / skipped / liked, first-event time, plays.

    Both a play and a skip in the session make one *skipped* row. A skip or like with no play is
    kept as a played row (the play was lost upstream) and counted.
    """
    ev = events[events["track_id"].notna()]
    flags = pd.DataFrame(
        {
            "session_id": ev["session_id"].to_numpy(),
            "track_id": ev["track_id"].to_numpy(),
            "user_id": ev["user_id"].to_numpy(),
            "timestamp": ev["timestamp"].array,  # stays tz-aware datetime64, no object boxing
            "plays": (ev["event_type"] == "play").to_numpy(),
            "skipped": (ev["event_type"] == "skip").to_numpy(),
            "liked": (ev["event_type"] == "like").to_numpy(),
        }
    )
    # Keyed by user too: a session id reused by two users (counted upstream) stays two rows.
    rows = (
        flags.groupby(["session_id", "user_id", "track_id"], sort=True, observed=True)
        .agg(
            timestamp=("timestamp", "min"),
            plays=("plays", "sum"),
            skipped=("skipped", "any"),
            liked=("liked", "any"),
        )
        .reset_index()
    )
    no_play = rows["plays"] == 0
    stats = {
        "track_events": len(ev),
        "session_track_rows": len(rows),
        "skip_without_play": int((no_play & rows["skipped"]).sum()),
        "like_without_play": int((no_play & rows["liked"] & ~rows["skipped"]).sum()),
        "repeated_plays_in_session": int((rows["plays"] > 1).sum()),
        "skipped_share": float(rows["skipped"].mean()) if len(rows) else 0.0,
        "liked_share": float(rows["liked"].mean()) if len(rows) else 0.0,
    }
    rows["plays"] = rows["plays"].clip(lower=1).astype("int64")
    logger.info("De-duplicated %d track events into %d (session, track) rows", len(ev), len(rows))
    return rows, stats


def _pair_codes(user_id: pd.Series, track_id: pd.Series) -> tuple[np.ndarray, int]:
    """Each row's (user, track) pair as 0, 1, ... in order of first appearance, and how many
    pairs: as factorizing the pairs, but each column hashed once and the pairs as integers."""
    users, user_values = pd.factorize(user_id, use_na_sentinel=False)
    tracks = pd.factorize(track_id, use_na_sentinel=False)[0].astype(np.int64)
    codes, pairs = pd.factorize(tracks * max(len(user_values), 1) + users)
    return codes, len(pairs)


def assign_split(session_tracks: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """Mark each row ``train`` or ``test``.

    ``random``: a seeded ``test_size`` share of (user, track) pairs go to test with all their rows,
    so no pair is on both sides. ``temporal``: rows at or after the ``1 - test_size`` time
    quantile are test.
    """
    strategy, test_size = params["strategy"], float(params["test_size"])
    rows = session_tracks.copy()
    if strategy == "random":
        pair_codes, n_pairs = _pair_codes(rows["user_id"], rows["track_id"])
        rng = np.random.default_rng(params["seed"])
        test_pairs = rng.random(n_pairs) < test_size
        is_test = test_pairs[pair_codes]
        cutoff = None
    elif strategy == "temporal":
        cutoff = rows["timestamp"].quantile(1 - test_size)
        is_test = (rows["timestamp"] >= cutoff).to_numpy()
    else:
        raise ValueError(f"split.strategy must be 'random' or 'temporal', not {strategy!r}")
    rows["split"] = pd.Categorical(np.where(is_test, "test", "train"), categories=["train", "test"])
    summary = {
        "strategy": strategy,
        "test_size": test_size,
        "train_rows": int((~is_test).sum()),
        "test_rows": int(is_test.sum()),
        "cutoff": None if cutoff is None else str(cutoff),
    }
    return rows, summary


def build_interactions(session_tracks: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Implicit (user, track) interactions per split: ``like`` => 1, other track events => 0.

    ``liked`` is the truth. How a pair enters LightFM's training matrix is ``non_like``:
    ``drop`` (likes only: other pairs get ``label`` 0, i.e. absent), ``weight`` (every played
    pair is a positive, weighted ``like_weight`` / ``skip_weight`` / ``play_weight``) or
    ``negative`` (non-liked pairs get ``label`` -1, for logistic loss). A test pair already
    seen in training is dropped from test (it can happen with the temporal split).
    """
    agg = (
        session_tracks.groupby(["split", "user_id", "track_id"], observed=True)
        .agg(
            plays=("plays", "sum"),
            skips=("skipped", "sum"),
            likes=("liked", "sum"),
            first_seen=("timestamp", "min"),
        )
        .reset_index()
    )
    train_pairs = agg.loc[agg["split"] == "train", ["user_id", "track_id"]]
    seen = agg.merge(train_pairs.assign(_seen=True), on=["user_id", "track_id"], how="left")
    agg = agg[(agg["split"] == "train") | seen["_seen"].isna().to_numpy()].reset_index(drop=True)
    return label_pairs(agg, params)


def fit_skip_rates(
    session_tracks: pd.DataFrame, smoothing: float
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """User and track skip rates from training rows, shrunk towards the global rate.

    ``rate = (skips + m * global) / (rows + m)`` with ``m = smoothing``; ``m = 0`` is the raw
    share. Entities unseen in training get the global rate when features are built.
    """
    train = session_tracks[session_tracks["split"] == "train"]
    global_rate = float(train["skipped"].mean()) if len(train) else 0.0

    def rates(key: str) -> pd.DataFrame:
        g = train.groupby(key, observed=True)["skipped"].agg(["sum", "count"])
        rate = (g["sum"] + smoothing * global_rate) / (g["count"] + smoothing)
        return pd.DataFrame(
            {key: g.index, "skip_rate": rate.to_numpy(), "train_rows": g["count"].to_numpy()}
        )

    return rates("user_id"), rates("track_id"), global_rate


def genre_vocabulary(artists: pd.DataFrame, users: pd.DataFrame) -> list[str]:
    """Every genre an artist carries or a user names, sorted."""
    return sorted(
        set(artists["genres"].explode().dropna())
        | set(users["favourite_genres"].explode().dropna())
    )


def build_user_features(
    users: pd.DataFrame, user_rates: pd.DataFrame, global_rate: float, genres: list[str]
) -> pd.DataFrame:
    """Per user: premium flag, training skip rate, favourite-genre indicators ``fav_<genre>``."""
    out = users[["user_id", "premium_user"]].copy()
    out = out.merge(user_rates[["user_id", "skip_rate", "train_rows"]], on="user_id", how="left")
    out["skip_rate"] = out["skip_rate"].fillna(global_rate)
    out["train_rows"] = out["train_rows"].fillna(0).astype("int64")
    fav = multi_hot(users["favourite_genres"].reset_index(drop=True), "fav_", genres)
    return pd.concat([out.reset_index(drop=True), fav], axis=1)


def fit_track_scaler(tracks: pd.DataFrame, session_tracks: pd.DataFrame) -> Pipeline:
    """Median imputation and standardisation of numeric track features, fit on training tracks."""
    train_ids = session_tracks.loc[session_tracks["split"] == "train", "track_id"].unique()
    train_tracks = tracks[tracks["track_id"].isin(train_ids)]
    if train_tracks.empty:
        raise ValueError("no track has a training interaction: nothing to fit the scaler on")
    scaler = Pipeline(
        [
            # A feature with no value in training is kept (as 0 after scaling), not dropped.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    cols = ColumnTransformer(
        [("numeric", scaler, NUMERIC_TRACK_FEATURES)], verbose_feature_names_out=False
    )
    cols.set_output(transform="pandas")
    return Pipeline([("columns", cols)]).fit(_numeric(train_tracks))


def _numeric(tracks: pd.DataFrame) -> pd.DataFrame:
    return tracks[NUMERIC_TRACK_FEATURES].astype("float64")


def build_track_features(
    tracks: pd.DataFrame,
    artists: pd.DataFrame,
    scaler: Pipeline,
    track_rates: pd.DataFrame,
    global_rate: float,
    genres: list[str],
) -> pd.DataFrame:
    """Per track: standardised numeric features ``z_<name>``, explicit, skip rate, genres."""
    z = scaler.transform(_numeric(tracks)).add_prefix("z_").reset_index(drop=True)
    base = tracks[["track_id", "artist_id"]].reset_index(drop=True)
    base["explicit"] = tracks["explicit"].fillna(False).astype("int8").to_numpy()
    base = base.merge(
        track_rates[["track_id", "skip_rate", "train_rows"]], on="track_id", how="left"
    )
    base["skip_rate"] = base["skip_rate"].fillna(global_rate)
    base["train_rows"] = base["train_rows"].fillna(0).astype("int64")
    track_genres = base[["artist_id"]].merge(
        artists[["artist_id", "genres"]], on="artist_id", how="left"
    )["genres"]
    track_genres = track_genres.map(lambda g: g if isinstance(g, list | np.ndarray) else [])
    return pd.concat([base, z, multi_hot(track_genres, "genre_", genres)], axis=1)


def _feature_matrix(
    table: pd.DataFrame,
    id_col: str,
    columns: list[str],
    mapping: dict,
    feature_mapping: dict,
    identity: bool,
    normalize: bool,
    indicator: pd.Series | None = None,
) -> sp.csr_matrix:
    """CSR features in ``lightfm.data.Dataset`` index order, built without a Python loop.

    ``indicator`` (feature names, row by row with ``table``) adds one 1-valued feature per row,
    scattered straight into the sparse matrix: a one-hot of 20,000 artists over 100,000
    tracks would be 2e9 dense cells."""
    n, m = len(mapping), len(feature_mapping)
    ids = table[id_col]
    rows_idx = ids.map(mapping).to_numpy()
    values = table[columns].to_numpy(dtype=np.float32)
    col_idx = np.array([feature_mapping[c] for c in columns], dtype=np.int64)
    r, c = np.nonzero(values)
    rows, cols, vals = [rows_idx[r]], [col_idx[c]], [values[r, c]]
    if indicator is not None:
        rows.append(rows_idx)
        cols.append(indicator.map(feature_mapping).to_numpy(dtype=np.int64))
        vals.append(np.ones(len(table), np.float32))
    mat = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, m)
    ).tocsr()
    if identity:
        own = np.array([feature_mapping[i] for i in ids])
        mat = mat + sp.csr_matrix((np.ones(n, np.float32), (rows_idx, own)), shape=(n, m))
    if normalize:
        sums = np.asarray(abs(mat).sum(axis=1)).ravel()
        mat = sp.diags(1.0 / np.where(sums == 0, 1.0, sums)).dot(mat).tocsr()
    return mat.astype(np.float32)


def _lightfm_feature_columns(
    user_features: pd.DataFrame, track_features: pd.DataFrame, params: dict
) -> tuple[list[str], list[str], pd.Series | None]:
    """User feature columns, dense item feature columns and, if asked, each track's
    ``artist_<id>`` feature name (categorical: its categories are every artist feature, in
    ``pd.get_dummies``' order)."""
    user_cols = [c for c in user_features.columns if c.startswith("fav_")]
    if params["user_premium_feature"]:
        user_cols.append("premium_user")
    item_cols = [
        c
        for c in track_features.columns
        if c.startswith("genre_") or (params["audio_features"] and c.startswith("z_"))
    ]
    if not params["artist_feature"]:
        return user_cols, item_cols, None
    artists = pd.Categorical(track_features["artist_id"].fillna("unknown"))
    names = [f"artist_{a}" for a in artists.categories]
    return user_cols, item_cols, pd.Series(pd.Categorical.from_codes(artists.codes, names))


def build_lightfm_inputs(
    interactions: pd.DataFrame,
    user_features: pd.DataFrame,
    track_features: pd.DataFrame,
    params: dict,
) -> dict:
    """LightFM ``Dataset`` (id and feature mappings) plus train/test matrices and features.

    Returned keys: ``dataset``, ``train_interactions`` and ``train_weights`` (COO, as
    ``Dataset.build_interactions`` gives them), ``test_interactions`` (held-out likes),
    ``user_features``, ``item_features`` (CSR).
    """
    user_cols, item_cols, artist = _lightfm_feature_columns(user_features, track_features, params)
    artist_cols = [] if artist is None else list(artist.cat.categories)
    identity, normalize = params["identity_features"], params["normalize_features"]
    dataset = Dataset(user_identity_features=identity, item_identity_features=identity)
    dataset.fit(
        users=user_features["user_id"],
        items=track_features["track_id"],
        user_features=user_cols,
        item_features=item_cols + artist_cols,
    )
    user_map, user_feat_map, item_map, item_feat_map = dataset.mapping()
    uf_frame = user_features.assign(premium_user=user_features["premium_user"].astype("int8"))
    user_matrix = _feature_matrix(
        uf_frame, "user_id", user_cols, user_map, user_feat_map, identity, normalize
    )
    item_matrix = _feature_matrix(
        track_features,
        "track_id",
        item_cols,
        item_map,
        item_feat_map,
        identity,
        normalize,
        artist,
    )
    train = interactions[(interactions["split"] == "train") & (interactions["label"] != 0)]
    test = interactions[(interactions["split"] == "test") & interactions["liked"]]
    logger.info(
        "LightFM inputs: %d users x %d tracks, %d train / %d test interactions, "
        "%d user and %d item features",
        len(user_map),
        len(item_map),
        len(train),
        len(test),
        user_matrix.shape[1],
        item_matrix.shape[1],
    )
    return {
        "dataset": dataset,
        "train_interactions": pairs_matrix(train, train["label"], dataset),
        "train_weights": pairs_matrix(train, train["weight"], dataset),
        "test_interactions": pairs_matrix(test, np.ones(len(test)), dataset),
        "user_features": user_matrix,
        "item_features": item_matrix,
    }


def summarise_features(
    dedup_stats: dict, split_summary: dict, interactions: pd.DataFrame
) -> tuple[dict, dict]:
    """What feature engineering produced, as a JSON report and MLflow metrics."""
    by_split = interactions.groupby("split", observed=True).agg(
        pairs=("liked", "size"),
        liked_pairs=("liked", "sum"),
        users=("user_id", "nunique"),
        tracks=("track_id", "nunique"),
    )
    summary = {
        "deduplication": dedup_stats,
        "split": split_summary,
        "interactions": {s: {k: int(v) for k, v in row.items()} for s, row in by_split.iterrows()},
    }
    metrics = {f"fe/{k}": v for k, v in dedup_stats.items()}
    metrics.update(
        {f"fe/{s}/{k}": v for s, d in summary["interactions"].items() for k, v in d.items()}
    )
    return summary, mlflow_metrics(metrics)
