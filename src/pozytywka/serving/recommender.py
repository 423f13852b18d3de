"""Scoring for the service: per-user top-k, similar tracks, re-ranking and group playlists from
the LightFM representations, with cold start from favourite genres."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pozytywka.recsys.groups import (
    candidate_group_playlist,
    history_baseline,
    known_to_group,
)
from pozytywka.recsys.metrics import top_k
from pozytywka.recsys.mlflow_model import LightFMRecommender

from .catalogue import Catalogue, UnknownIds
from .schemas import Search

logger = logging.getLogger(__name__)

UNKNOWN_USER_HINT = (
    "Neither the model nor the user table knows this id; register the user "
    "with POST /users (favourite genres) to get cold-start recommendations"
)


@dataclass
class Member:
    user_id: int
    row: int | None  # the model's row, None for a cold-start user
    bias: float
    embedding: np.ndarray

    @property
    def cold_start(self) -> bool:
        return self.row is None


def _top(scores: np.ndarray, k: int, removed: np.ndarray | None) -> np.ndarray:
    """Positions of the ``k`` best scores (best first), never a removed one."""
    if removed is not None:
        scores = np.where(removed, -np.inf, scores)
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    return top_k(scores[None, :], k)[0]


class RecommenderEngine:
    """Holds float32 copies of the representations; every answer is a few matrix-vector
    products over the catalogue, with an optional HNSW index for similar tracks."""

    def __init__(
        self,
        recommender: LightFMRecommender,
        catalogue: Catalogue,
        config: dict,
        group_params: dict,
    ):
        self.recommender, self.catalogue = recommender, catalogue
        self.config, self.group_params = config, group_params
        scorer = recommender.scorer
        self.item_emb = np.ascontiguousarray(scorer.item_emb, dtype=np.float32)
        self.item_emb_t = np.ascontiguousarray(self.item_emb.T)  # 2x faster products
        self.item_bias = np.asarray(scorer.item_bias, dtype=np.float32)
        self.user_emb = np.ascontiguousarray(scorer.user_emb, dtype=np.float32)
        self.user_bias = np.asarray(scorer.user_bias, dtype=np.float32)
        self.known = recommender.known.tocsr()
        norms = np.linalg.norm(self.item_emb, axis=1, keepdims=True)
        self.item_unit = self.item_emb / np.where(norms == 0, 1, norms)
        self.heads = self._precompute_heads(config["playlists"]["precomputed_head"])
        self.index = None
        cfg = config["similar_tracks"]
        if len(self.item_emb) >= cfg["ann_threshold"]:
            self.index = self._build_index(cfg["hnsw"])

    @property
    def n_tracks(self) -> int:
        return len(self.item_emb)

    def _precompute_heads(self, size: int) -> np.ndarray | None:
        """Every model user's ``size`` best tracks, best first: the start of their ranking in
        a group playlist, so a request sorts little (``size`` 0: compute per request)."""
        if size <= 0:
            return None
        size = min(size, self.n_tracks)
        heads = np.empty((len(self.user_emb), size), dtype=np.int32)
        for lo in range(0, len(self.user_emb), 256):
            rows = slice(lo, lo + 256)
            heads[rows] = top_k(
                self.user_emb[rows] @ self.item_emb_t + self.item_bias[None, :], size
            )
        logger.info(
            "Precomputed the best %d tracks of %d users (%.1f MB)",
            size,
            len(heads),
            heads.nbytes / 2**20,
        )
        return heads

    def _build_index(self, hnsw: dict):
        import hnswlib  # noqa: PLC0415 - only catalogues past the threshold need it

        index = hnswlib.Index(space="cosine", dim=self.item_emb.shape[1])
        index.init_index(
            max_elements=len(self.item_emb),
            ef_construction=hnsw["ef_construction"],
            M=hnsw["M"],
            random_seed=0,
        )
        index.add_items(self.item_emb, np.arange(len(self.item_emb)))
        index.set_ef(hnsw["ef_search"])
        logger.info(
            "HNSW index over %d track embeddings (M=%d, ef=%d)",
            len(self.item_emb),
            hnsw["M"],
            hnsw["ef_search"],
        )
        return index

    # ---- users ---------------------------------------------------------------------------

    def member(self, user_id: int) -> Member:
        row = self.recommender.user_index.get(user_id)
        if row is not None:
            return Member(user_id, row, float(self.user_bias[row]), self.user_emb[row])
        profile = self.catalogue.profile(user_id)
        if profile is None:
            raise UnknownIds("user", [user_id], UNKNOWN_USER_HINT)
        bias, emb = self.recommender.cold_start_representation(
            list(profile.favourite_genres), profile.premium
        )
        return Member(user_id, None, bias, emb)

    def members(self, user_ids: list[int]) -> list[Member]:
        found, unknown = [], []
        for u in user_ids:
            try:
                found.append(self.member(u))
            except UnknownIds:
                unknown.append(u)
        if unknown:
            raise UnknownIds("user", unknown, UNKNOWN_USER_HINT)
        return found

    def scores(self, members: list[Member]) -> np.ndarray:
        emb = np.stack([m.embedding for m in members])
        bias = np.array([m.bias for m in members], dtype=np.float32)
        return emb @ self.item_emb_t + self.item_bias[None, :] + bias[:, None]

    def history(self, member: Member) -> np.ndarray:
        if member.row is None:
            return np.empty(0, dtype=np.int64)
        k = self.known
        return k.indices[k.indptr[member.row] : k.indptr[member.row + 1]]

    def _known_mask(self, member: Member) -> np.ndarray | None:
        history = self.history(member)
        if not len(history):
            return None
        mask = np.zeros(self.n_tracks, dtype=bool)
        mask[history] = True
        return mask

    # ---- endpoints -----------------------------------------------------------------------

    def recommend(
        self, user_id: int, k: int, removed: np.ndarray | None, exclude_known: bool
    ) -> tuple[Member, np.ndarray, np.ndarray]:
        member = self.member(user_id)
        scores = self.scores([member])[0]
        known = self._known_mask(member) if exclude_known else None
        removed = _union(removed, known)
        top = _top(scores, k, removed)
        return member, top, scores[top]

    def rerank(
        self, user_id: int, positions: np.ndarray, removed: np.ndarray | None
    ) -> tuple[Member, np.ndarray, np.ndarray, np.ndarray]:
        """(member, kept positions best first, their scores, filtered-out positions)."""
        member = self.member(user_id)
        scores = self.item_emb[positions] @ member.embedding + self.item_bias[positions]
        scores = scores + member.bias
        drop = removed[positions] if removed is not None else np.zeros(len(positions), bool)
        kept, kept_scores = positions[~drop], scores[~drop]
        order = np.argsort(-kept_scores, kind="stable")
        return member, kept[order], kept_scores[order], positions[drop]

    def similar(
        self, position: int, k: int, removed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, Search]:
        """Tracks most similar to ``position`` by cosine of item embeddings (never itself)."""
        removed = np.zeros(self.n_tracks, bool) if removed is None else removed.copy()
        removed[position] = True
        if self.index is not None:
            found = self._similar_ann(self.index, position, k, removed)
            if found is not None:
                return (*found, "hnsw")
        sims = self.item_unit @ self.item_unit[position]
        top = _top(sims, k, removed)
        return top, sims[top], "exact"

    def _similar_ann(self, index, position: int, k: int, removed: np.ndarray):
        """HNSW neighbours, fetched in growing batches until ``k`` pass the filters; None if
        the filters leave too few for the index to find (the caller searches exactly)."""
        fetch = min(self.n_tracks, 2 * (k + 1))
        query = self.item_emb[position : position + 1]
        while True:
            index.set_ef(max(self.config["similar_tracks"]["hnsw"]["ef_search"], fetch))
            labels, distances = index.knn_query(query, k=fetch)
            labels, sims = labels[0].astype(np.int64), 1.0 - distances[0]
            keep = ~removed[labels]
            if keep.sum() >= k or fetch >= self.n_tracks:
                return labels[keep][:k], sims[keep][:k]
            if fetch >= 64 * (k + 1):
                return None
            fetch = min(self.n_tracks, 4 * fetch)

    def playlist(
        self, members: list[Member], n: int, strategy: str, removed: np.ndarray | None
    ) -> tuple[np.ndarray, int]:
        """Model variant: (track positions, the candidate cut that sufficed)."""
        excluded = _union(removed, self._group_known(members))
        top = self.group_params["gfar_top"] if strategy == "gfar" else self.group_params["top"]
        heads = None
        if self.heads is not None:
            heads = [None if m.row is None else self.heads[m.row] for m in members]
        return candidate_group_playlist(
            self.scores(members),
            n,
            strategy,
            excluded,
            top,
            self.config["playlists"]["candidates"],
            heads,
        )

    def baseline_playlist(
        self, members: list[Member], n: int, removed: np.ndarray | None, rng: np.random.Generator
    ) -> np.ndarray:
        """Base variant: ``n`` distinct tracks at random from the members' histories (fewer if
        the histories are shorter; none for a group of cold-start users)."""
        histories = [self.history(m) for m in members]
        if removed is not None:
            histories = [h[~removed[h]] for h in histories]
        return history_baseline(histories, n, rng)

    def _group_known(self, members: list[Member]) -> np.ndarray | None:
        policy = self.config["playlists"]["exclude_known"]
        rows = np.array([m.row for m in members if m.row is not None], dtype=np.int64)
        if policy == "none" or not len(rows):
            return None
        if policy == "all_members" and len(rows) < len(members):
            return None  # a cold-start member has played nothing: no track is known to all
        mask = known_to_group(self.known, rows, policy)
        return mask


def _union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a | b
