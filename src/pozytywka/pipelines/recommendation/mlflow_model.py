"""The trained recommender as an MLflow pyfunc model: user ids in, top-k tracks out."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .metrics import top_k
from .model import EmbeddingScorer


class LightFMRecommender(mlflow.pyfunc.PythonModel):
    """Holds LightFM's user and item representations with the id mappings.

    ``predict`` takes a frame with ``user_id`` (and optionally ``k``) and returns one row per
    recommended track: ``user_id``, ``rank``, ``track_id``, ``score``. Tracks the user already
    played are left out; unknown users get an empty answer.
    """

    def __init__(self, scorer: EmbeddingScorer, user_ids: np.ndarray, track_ids: np.ndarray,
                 known: sp.csr_matrix, k: int):
        self.scorer, self.user_ids, self.track_ids = scorer, user_ids, track_ids
        self.user_index = {u: i for i, u in enumerate(user_ids)}
        self.known, self.k = known, k

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        k = int(model_input["k"].iloc[0]) if "k" in model_input else self.k
        known = [u for u in model_input["user_id"] if u in self.user_index]
        if not known:
            return pd.DataFrame(columns=["user_id", "rank", "track_id", "score"])
        rows = np.array([self.user_index[u] for u in known])
        scores = np.where(self.known[rows].toarray() > 0, -np.inf, self.scorer(rows))
        top = top_k(scores, k)
        return pd.DataFrame({
            "user_id": np.repeat(np.array(known), top.shape[1]),
            "rank": np.tile(np.arange(1, top.shape[1] + 1), len(rows)),
            "track_id": self.track_ids[top.ravel()],
            "score": np.take_along_axis(scores, top, axis=1).ravel(),
        })
