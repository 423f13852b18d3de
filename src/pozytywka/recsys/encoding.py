"""Encodings shared by the pipelines and the service: implicit labels of (user, track) pairs,
pair matrices in a LightFM ``Dataset``'s index order, and multi-hot indicator columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm.data import Dataset


def label_pairs(pairs: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Add ``liked``, ``label`` and ``weight`` to (user, track) pairs with likes/skips counts."""
    mode = params["non_like"]
    if mode not in {"drop", "weight", "negative"}:
        raise ValueError(f"interactions.non_like must be drop, weight or negative, not {mode!r}")
    liked = (pairs["likes"] > 0).to_numpy()
    skipped = ~liked & (pairs["skips"] > 0).to_numpy()
    other_label = {"drop": 0, "weight": 1, "negative": -1}[mode]
    out = pairs.copy()
    out["liked"] = liked
    out["label"] = np.where(liked, 1, other_label).astype("int8")
    out["weight"] = np.where(
        liked,
        params["like_weight"],
        np.where(skipped, params["skip_weight"], params["play_weight"]),
    )
    out.loc[out["label"] == 0, "weight"] = 0.0
    return out


def pairs_matrix(pairs: pd.DataFrame, values, dataset: Dataset) -> sp.coo_matrix:
    """A (users x tracks) COO matrix in ``dataset``'s index order with ``values`` at the pairs."""
    user_map, _, item_map, _ = dataset.mapping()
    return sp.coo_matrix(
        (
            np.asarray(values, dtype=np.float32),
            (pairs["user_id"].map(user_map).to_numpy(), pairs["track_id"].map(item_map).to_numpy()),
        ),
        shape=(len(user_map), len(item_map)),
    )


def multi_hot(lists: pd.Series, prefix: str, vocabulary: list[str]) -> pd.DataFrame:
    """0/1 indicator columns ``<prefix><item>`` for lists of items (items outside the
    vocabulary are ignored), indexed like ``lists``; one scatter, no per-row loop."""
    exploded = lists.explode()
    codes = pd.Categorical(exploded, categories=vocabulary).codes
    rows = np.repeat(
        np.arange(len(lists)),
        lists.map(lambda v: max(len(v), 1) if isinstance(v, list | np.ndarray) else 1).to_numpy(),
    )
    onehot = np.zeros((len(lists), len(vocabulary)), dtype=np.int8)
    hit = codes >= 0
    onehot[rows[hit], codes[hit]] = 1
    return pd.DataFrame(onehot, index=lists.index, columns=[f"{prefix}{c}" for c in vocabulary])
