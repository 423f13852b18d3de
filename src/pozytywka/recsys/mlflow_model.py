"""The trained recommender as an MLflow pyfunc model: user ids in, top-k tracks out.

The same object is what the serving API loads (from the local files or from an MLflow model
URI), so it also carries what cold start needs: the embeddings of the user features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.pyfunc import PythonModel

from pozytywka.recsys.metrics import top_k
from pozytywka.recsys.model import EmbeddingScorer


class LightFMRecommender(PythonModel):
    """Holds LightFM's user and item representations with the id mappings.

    ``predict`` takes a frame with ``user_id`` (and optionally ``k``) and returns one row per
    recommended track: ``user_id``, ``rank``, ``track_id``, ``score``. Tracks the user already
    played are left out; unknown users get an empty answer.

    ``user_feature_embeddings`` / ``user_feature_biases`` (one row per user feature, named by
    ``user_feature_index``) build a representation for a user the model has not seen from their
    favourite genres (and premium flag), normalised as training rows were (``normalize``).
    """

    # Columns a request may leave out (the logged signature says so).
    optional_inputs = ("k",)

    def __init__(
        self,
        scorer: EmbeddingScorer,
        user_ids: np.ndarray,
        track_ids: np.ndarray,
        known: sp.csr_matrix,
        k: int,
        user_feature_embeddings: np.ndarray | None = None,
        user_feature_biases: np.ndarray | None = None,
        user_feature_index: dict[str, int] | None = None,
        normalize: bool = True,
        identity_features: bool = True,
    ):
        self.scorer, self.user_ids, self.track_ids = scorer, user_ids, track_ids
        self.user_index = {u: i for i, u in enumerate(user_ids)}
        self.known, self.k = known, k
        self.user_feature_embeddings = user_feature_embeddings
        self.user_feature_biases = user_feature_biases
        self.user_feature_index = user_feature_index or {}
        self.normalize, self.identity_features = normalize, identity_features

    def cold_start_representation(
        self, favourite_genres: list[str], premium: bool
    ) -> tuple[float, np.ndarray]:
        """(bias, embedding) of a user known only by favourite genres and premium flag.

        Features are weighted as in a training row; a trained user's identity feature carries
        their own taste, which a new user does not have yet, so it contributes nothing.
        """
        if self.user_feature_embeddings is None or self.user_feature_biases is None:
            raise ValueError("this model was packaged without user-feature embeddings")
        names = [f"fav_{g}" for g in favourite_genres]
        if premium:
            names.append("premium_user")
        cols = sorted({self.user_feature_index[n] for n in names if n in self.user_feature_index})
        weight = 1.0
        if self.normalize:
            weight = 1.0 / max(len(cols) + int(self.identity_features), 1)
        emb = weight * self.user_feature_embeddings[cols].sum(axis=0)
        bias = weight * float(self.user_feature_biases[cols].sum())
        return bias, emb.astype(np.float32)

    def input_example(self) -> pd.DataFrame:
        """A request for the first known user's top ``k`` (the logged model's example)."""
        return pd.DataFrame({"user_id": self.user_ids[:1], "k": [self.k]})

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        k = int(model_input["k"].iloc[0]) if "k" in model_input else self.k
        known = [u for u in model_input["user_id"] if u in self.user_index]
        if not known:
            return pd.DataFrame(columns=["user_id", "rank", "track_id", "score"])
        rows = np.array([self.user_index[u] for u in known])
        scores = np.where(self.known[rows].toarray() > 0, -np.inf, self.scorer(rows))
        top = top_k(scores, k)
        return pd.DataFrame(
            {
                "user_id": np.repeat(np.array(known), top.shape[1]),
                "rank": np.tile(np.arange(1, top.shape[1] + 1), len(rows)),
                "track_id": self.track_ids[top.ravel()],
                "score": np.take_along_axis(scores, top, axis=1).ravel(),
            }
        )
