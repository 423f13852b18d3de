"""The trained recommender as an MLflow pyfunc model: user ids in, top-k tracks out.

The same object is what the serving API loads (from the local files or from an MLflow model
URI), so it also carries what cold start needs: the embeddings of the user features. Beside
LightFM it holds the other recommenders' precomputed per-user heads (``Ranking``) and which
recommender was chosen on validation (``served``): the pyfunc and the service answer from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlflow.pyfunc import PythonModel

from pozytywka.recsys.metrics import top_k
from pozytywka.recsys.model import EmbeddingScorer

LIGHTFM = "lightfm"


@dataclass
class Ranking:
    """A recommender's best ``depth`` tracks for every model user, best first."""

    # int32, (n_users, depth): track positions (columns), never a track the user already
    # played (``known``); -1 pads a row with fewer tracks (its score is then -inf).
    positions: np.ndarray
    # float32, (n_users, depth): that recommender's scores, non-increasing along each row.
    scores: np.ndarray

    @property
    def depth(self) -> int:
        return int(self.positions.shape[1])

    def head(self, row: int) -> np.ndarray:
        """Model row ``row``'s ranked track positions, best first (padding left out)."""
        positions = self.positions[row]
        return positions[(positions >= 0) & np.isfinite(self.scores[row])]


def ranked_scores(ranking: Ranking, rows: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Full score rows (float64) of model rows ``rows`` under a recommender with a
    ``Ranking``: ``fallback`` (LightFM's scores of those rows, one row each) shifted so that
    all of it lies strictly below the row's lowest head score (its best at that score minus
    1), then the head's own scores written at the head's positions. So the order is the head,
    then LightFM's order for every other track. A row without a head keeps LightFM's order.
    (The same rule as ``recsys.ranker.ranked_scorer``: evaluation and service agree.)"""
    scores = np.array(fallback, dtype=np.float64)  # a copy
    if scores.ndim != 2 or scores.shape[0] != len(rows):
        raise ValueError(f"fallback scores of shape {scores.shape} for {len(rows)} rows")
    positions = ranking.positions[rows]
    head = ranking.scores[rows].astype(np.float64)
    valid = (positions >= 0) & np.isfinite(head)
    floor = np.where(valid, head, np.inf).min(axis=1)
    floor = np.where(np.isfinite(floor), floor, 0.0)
    top = scores.max(axis=1, initial=-np.inf)
    if not np.isfinite(top).all():  # a row with +inf or nan: its best finite score
        top = np.where(np.isfinite(scores), scores, -np.inf).max(axis=1, initial=-np.inf)
        top = np.where(np.isfinite(top), top, 0.0)
    scores += (floor - 1.0 - top)[:, None]
    r, c = np.nonzero(valid)
    scores[r, positions[r, c]] = head[r, c]
    return scores


class LightFMRecommender(PythonModel):
    """Holds LightFM's user and item representations with the id mappings, and the other
    recommenders' per-user heads.

    ``predict`` takes a frame with ``user_id`` (and optionally ``k``) and returns one row per
    recommended track: ``user_id``, ``rank``, ``track_id``, ``score``, from the ``served``
    recommender (``scores``). Tracks the user already played are left out; unknown users get
    an empty answer.

    ``user_feature_embeddings`` / ``user_feature_biases`` (one row per user feature, named by
    ``user_feature_index``) build a representation for a user the model has not seen from their
    favourite genres (and premium flag), normalised as training rows were (``normalize``).
    Only LightFM reads user features, so such a user is always scored by LightFM.

    ``served``: the recommender chosen on validation, ``"lightfm"`` or a key of ``rankings``.
    ``rankings``: per other recommender (``"ranker"``, ``"ease"``, ``"als"``,
    ``"popularity"``), its ``Ranking``, one row per entry of ``user_ids``.
    ``item_vectors``: per recommender, an (n_tracks, d) matrix whose cosine similarity defines
    its similar tracks; a recommender without one uses LightFM's item embeddings.
    Pickles made before these existed load as ``served="lightfm"`` with none of them.
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
        served: str = LIGHTFM,
        rankings: dict[str, Ranking] | None = None,
        item_vectors: dict[str, np.ndarray] | None = None,
    ):
        self.scorer, self.user_ids, self.track_ids = scorer, user_ids, track_ids
        self.user_index = {u: i for i, u in enumerate(user_ids)}
        self.known, self.k = known, k
        self.user_feature_embeddings = user_feature_embeddings
        self.user_feature_biases = user_feature_biases
        self.user_feature_index = user_feature_index or {}
        self.normalize, self.identity_features = normalize, identity_features
        self.served = served
        self.rankings = dict(rankings or {})
        self.item_vectors = dict(item_vectors or {})
        self._check()

    def __setstate__(self, state: dict) -> None:
        """Pickles from before the other recommenders: LightFM alone, served."""
        self.__dict__.update(state)
        self.__dict__.setdefault("served", LIGHTFM)
        self.__dict__.setdefault("rankings", {})
        self.__dict__.setdefault("item_vectors", {})

    def _check(self) -> None:
        n_users, n_tracks = len(self.user_ids), len(self.track_ids)
        if LIGHTFM in self.rankings:
            raise ValueError("LightFM is scored from its embeddings: no ranking named 'lightfm'")
        if self.served not in self.recommenders:
            raise ValueError(
                f"served recommender {self.served!r} is neither 'lightfm' nor a key of rankings "
                f"({', '.join(self.rankings) or 'none'})"
            )
        for name, ranking in self.rankings.items():
            positions, scores = np.asarray(ranking.positions), np.asarray(ranking.scores)
            if positions.ndim != 2 or positions.shape != scores.shape:
                raise ValueError(
                    f"ranking {name!r}: positions {positions.shape} and scores {scores.shape} "
                    "must be the same (n_users, depth) shape"
                )
            if positions.shape[0] != n_users:
                raise ValueError(
                    f"ranking {name!r} has {positions.shape[0]} rows for {n_users} users"
                )
            if positions.size and (positions.max() >= n_tracks or positions.min() < -1):
                raise ValueError(f"ranking {name!r} holds positions outside 0..{n_tracks - 1}")
        for name, vectors in self.item_vectors.items():
            if np.ndim(vectors) != 2 or len(vectors) != n_tracks:
                raise ValueError(
                    f"item_vectors[{name!r}] must have one row per track ({n_tracks}), "
                    f"not shape {np.shape(vectors)}"
                )

    @property
    def recommenders(self) -> tuple[str, ...]:
        """The recommenders this model can answer from: LightFM first, then the rankings'."""
        return (LIGHTFM, *self.rankings)

    def scores(self, rows: np.ndarray, recommender: str | None = None) -> np.ndarray:
        """Full score rows of model rows ``rows`` under ``recommender`` (default: ``served``):
        LightFM's embedding scores, or a ranking's head then LightFM's order
        (``ranked_scores``). Played tracks are not taken out here."""
        name = self.served if recommender is None else recommender
        if name not in self.recommenders:
            raise KeyError(f"this model holds no recommender {name!r} ({self.recommenders})")
        rows = np.asarray(rows)
        base = self.scorer(rows)
        if name == LIGHTFM:
            return base
        return ranked_scores(self.rankings[name], rows, base)

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
        """Each known user's top ``k`` from the served recommender: for a ranking, its head
        (played tracks are never in it), then, past its depth, LightFM's order."""
        k = int(model_input["k"].iloc[0]) if "k" in model_input else self.k
        known = [u for u in model_input["user_id"] if u in self.user_index]
        if not known:
            return pd.DataFrame(columns=["user_id", "rank", "track_id", "score"])
        rows = np.array([self.user_index[u] for u in known])
        scores = np.where(self.known[rows].toarray() > 0, -np.inf, self.scores(rows))
        top = top_k(scores, k)
        return pd.DataFrame(
            {
                "user_id": np.repeat(np.array(known), top.shape[1]),
                "rank": np.tile(np.arange(1, top.shape[1] + 1), len(rows)),
                "track_id": self.track_ids[top.ravel()],
                "score": np.take_along_axis(scores, top, axis=1).ravel(),
            }
        )
