"""Scoring for the service: per-user top-k, similar tracks, re-ranking and group playlists from
any recommender the packaged model holds (LightFM's representations, or another recommender's
precomputed per-user head followed by LightFM's order), with cold start from favourite genres
(always LightFM's: only it reads user features)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from pozytywka.recsys.groups import (
    candidate_group_playlist,
    history_baseline,
    known_to_group,
)
from pozytywka.recsys.metrics import top_k
from pozytywka.recsys.mlflow_model import LIGHTFM, LightFMRecommender, Ranking, ranked_scores

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


@dataclass
class _Space:
    """The track vectors one recommender's similar tracks come from: unit rows for exact
    cosine search, and an HNSW index past ``similar_tracks.ann_threshold`` tracks."""

    name: str  # the recommender whose vectors these are ("lightfm": its item embeddings)
    vectors: np.ndarray
    unit: np.ndarray
    index: Any  # hnswlib.Index or None


class RecommenderEngine:
    """Holds float32 copies of the representations; every answer is a few matrix-vector
    products over the catalogue, with an optional HNSW index for similar tracks.

    Each scoring method takes ``recommender``: ``"lightfm"`` or a ranking the model holds
    (``recommenders``); None means the served one (``served``, chosen on validation). A
    model user's scores under a ranking are that ranking's head, then LightFM's order
    (``recsys.mlflow_model.ranked_scores``); a cold-start user is scored by LightFM whatever
    the recommender."""

    def __init__(
        self,
        recommender: LightFMRecommender,
        catalogue: Catalogue,
        config: dict,
        group_params: dict,
    ):
        self.recommender, self.catalogue = recommender, catalogue
        self.config, self.group_params = config, group_params
        self.served: str = recommender.served
        self.rankings = recommender.rankings
        self.recommenders: tuple[str, ...] = recommender.recommenders
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
        self.digest = self._digest()
        self._heads: dict[str, np.ndarray] = {}
        self._spaces: dict[str, _Space] = {}
        self.prepare(self.served)

    def prepare(self, *recommenders: str) -> None:
        """Build what answering from ``recommenders`` needs ahead of the first request: their
        precomputed playlist heads and similar-track vectors (an HNSW index past the
        configured size). Others are built at their first use."""
        for name in recommenders:
            self.heads_of(name)
            self.space(name)

    @property
    def n_tracks(self) -> int:
        return len(self.item_emb)

    def _digest(self) -> str:
        """12 hex digits of the model's contents: LightFM's representations (alone, for a
        model with nothing else, as versions were named before), the rankings and vectors."""
        h = hashlib.sha256()
        h.update(self.item_emb.tobytes())
        h.update(self.user_emb.tobytes())
        for name, ranking in sorted(self.rankings.items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(ranking.positions).tobytes())
            h.update(np.ascontiguousarray(ranking.scores).tobytes())
        for name, vectors in sorted(self.recommender.item_vectors.items()):
            h.update(name.encode())
            h.update(np.ascontiguousarray(vectors).tobytes())
        return h.hexdigest()[:12]

    def model_version(self, recommender: str | None = None) -> str:
        """The version an answer of ``recommender`` (None: the served one) is logged with:
        its name and the model's digest, e.g. ``ranker-0123456789ab``."""
        return f"{self.resolve(recommender)}-{self.digest}"

    @property
    def index(self):
        """The served recommender's HNSW index for similar tracks (None: exact search)."""
        return self.space(self.served).index

    def resolve(self, recommender: str | None) -> str:
        """``recommender``, None meaning the served one; a name the model lacks is a
        ValueError naming those it has."""
        name = self.served if recommender is None else recommender
        if name not in self.recommenders:
            raise ValueError(
                f"the loaded model holds no recommender {name!r}; it holds "
                f"{', '.join(self.recommenders)}"
            )
        return name

    def answered_by(self, recommender: str | None, members: list[Member]) -> str:
        """The recommender whose scores an answer for ``members`` came from: ``recommender``
        for any model user among them; LightFM when all are cold-start users."""
        name = self.resolve(recommender)
        return name if any(m.row is not None for m in members) else LIGHTFM

    def similar_by(self, recommender: str | None) -> str:
        """The recommender whose track vectors answer similar tracks for ``recommender``:
        itself if the model holds vectors for it, else LightFM (its item embeddings)."""
        name = self.resolve(recommender)
        return name if name in self.recommender.item_vectors else LIGHTFM

    def space(self, recommender: str | None = None) -> _Space:
        """The similar-track vectors of ``recommender`` (built once; the served one's at
        start-up, with its HNSW index past the configured catalogue size)."""
        name = self.similar_by(recommender)
        if name not in self._spaces:
            if name == LIGHTFM:
                vectors, unit = self.item_emb, self.item_unit
            else:
                vectors = np.ascontiguousarray(self.recommender.item_vectors[name], np.float32)
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                unit = vectors / np.where(norms == 0, 1, norms)
            cfg = self.config["similar_tracks"]
            index = None
            if len(vectors) >= cfg["ann_threshold"]:
                index = self._build_index(vectors, cfg["hnsw"], name)
            self._spaces[name] = _Space(name, vectors, unit, index)
        return self._spaces[name]

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

    def heads_of(self, recommender: str | None = None) -> np.ndarray | None:
        """Every model user's best tracks under ``recommender``, best first (None without
        precomputed heads): LightFM's precomputed ones, or the ranking's head followed by
        LightFM's precomputed best tracks outside it, cut to the same width. Every track
        outside a row scores lower than the row's last (below a ranking's head LightFM's
        order holds), as a group playlist's first heads need. Built once per recommender."""
        name = self.resolve(recommender)
        if self.heads is None or name == LIGHTFM:
            return self.heads
        if name not in self._heads:
            self._heads[name] = _merged_heads(self.rankings[name], self.heads, self.n_tracks)
        return self._heads[name]

    @staticmethod
    def _build_index(vectors: np.ndarray, hnsw: dict, name: str):
        import hnswlib  # noqa: PLC0415 - only catalogues past the threshold need it

        index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
        index.init_index(
            max_elements=len(vectors),
            ef_construction=hnsw["ef_construction"],
            M=hnsw["M"],
            random_seed=0,
        )
        index.add_items(vectors, np.arange(len(vectors)))
        index.set_ef(hnsw["ef_search"])
        logger.info(
            "HNSW index over %d track vectors of %s (M=%d, ef=%d)",
            len(vectors),
            name,
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

    def scores(self, members: list[Member], recommender: str | None = None) -> np.ndarray:
        """Each member's full score row under ``recommender`` (None: the served one): the
        one scoring rule every endpoint ranks by. LightFM: its embedding scores (float32). A
        ranking: for model users, its head, then LightFM's order below it (float64); a
        cold-start member's row is LightFM's cold start whatever the recommender."""
        name = self.resolve(recommender)
        emb = np.stack([m.embedding for m in members])
        bias = np.array([m.bias for m in members], dtype=np.float32)
        scores = emb @ self.item_emb_t + self.item_bias[None, :] + bias[:, None]
        if name == LIGHTFM:
            return scores
        at = [i for i, m in enumerate(members) if m.row is not None]
        rows = np.array([members[i].row for i in at], dtype=np.int64)
        if len(at) == len(members):
            return ranked_scores(self.rankings[name], rows, scores)
        out = scores.astype(np.float64)
        if at:
            out[at] = ranked_scores(self.rankings[name], rows, scores[at])
        return out

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
        self,
        user_id: int,
        k: int,
        removed: np.ndarray | None,
        exclude_known: bool,
        recommender: str | None = None,
    ) -> tuple[Member, np.ndarray, np.ndarray]:
        """(member, the ``k`` best track positions best first, their scores) under
        ``recommender`` (None: the served one; ``answered_by`` names who answered)."""
        member = self.member(user_id)
        scores = self.scores([member], recommender)[0]
        known = self._known_mask(member) if exclude_known else None
        removed = _union(removed, known)
        top = _top(scores, k, removed)
        return member, top, scores[top]

    def rerank(
        self,
        user_id: int,
        positions: np.ndarray,
        removed: np.ndarray | None,
        recommender: str | None = None,
    ) -> tuple[Member, np.ndarray, np.ndarray, np.ndarray]:
        """(member, kept positions best first, their scores, filtered-out positions) under
        ``recommender`` (None: the served one)."""
        member = self.member(user_id)
        if self.resolve(recommender) == LIGHTFM or member.row is None:
            scores = self.item_emb[positions] @ member.embedding + self.item_bias[positions]
            scores = scores + member.bias
        else:  # the shift below a ranking's head needs the user's whole row
            scores = self.scores([member], recommender)[0][positions]
        drop = removed[positions] if removed is not None else np.zeros(len(positions), bool)
        kept, kept_scores = positions[~drop], scores[~drop]
        order = np.argsort(-kept_scores, kind="stable")
        return member, kept[order], kept_scores[order], positions[drop]

    def similar(
        self, position: int, k: int, removed: np.ndarray | None, recommender: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, Search]:
        """Tracks most similar to ``position`` by cosine of ``recommender``'s track vectors
        (None: the served one's; LightFM's item embeddings for a recommender without its
        own vectors: ``similar_by``), never itself."""
        space = self.space(recommender)
        removed = np.zeros(self.n_tracks, bool) if removed is None else removed.copy()
        removed[position] = True
        if space.index is not None:
            found = self._similar_ann(space, position, k, removed)
            if found is not None:
                return (*found, "hnsw")
        sims = space.unit @ space.unit[position]
        top = _top(sims, k, removed)
        return top, sims[top], "exact"

    def _similar_ann(self, space: _Space, position: int, k: int, removed: np.ndarray):
        """HNSW neighbours, fetched in growing batches until ``k`` pass the filters; None if
        the filters leave too few for the index to find (the caller searches exactly)."""
        index = space.index
        assert index is not None
        fetch = min(self.n_tracks, 2 * (k + 1))
        query = space.vectors[position : position + 1]
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
        self,
        members: list[Member],
        n: int,
        strategy: str,
        removed: np.ndarray | None,
        recommender: str | None = None,
    ) -> tuple[np.ndarray, int]:
        """A recommender's group playlist, aggregated by ``strategy`` over the members' rows
        under ``recommender`` (None: the served one): (track positions, the candidate cut that
        sufficed)."""
        name = self.resolve(recommender)
        excluded = _union(removed, self._group_known(members))
        top = self.group_params["gfar_top"] if strategy == "gfar" else self.group_params["top"]
        heads = None
        best = self.heads_of(name)
        if best is not None:
            heads = [None if m.row is None else best[m.row] for m in members]
        return candidate_group_playlist(
            self.scores(members, name),
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


def _merged_heads(
    ranking: Ranking, lightfm: np.ndarray, n_tracks: int, batch: int = 1024
) -> np.ndarray:
    """Per user, the ranking's head (padding left out) then LightFM's best tracks
    (``lightfm``, best first) that are not in it, cut to ``lightfm``'s width."""
    n_users, width = lightfm.shape
    out = np.empty_like(lightfm)
    for lo in range(0, n_users, batch):
        rows = np.arange(lo, min(lo + batch, n_users))
        positions = ranking.positions[rows]
        valid = (positions >= 0) & np.isfinite(ranking.scores[rows])
        in_head = np.zeros((len(rows), n_tracks), dtype=bool)
        r, c = np.nonzero(valid)
        in_head[r, positions[r, c]] = True
        best = lightfm[rows]
        keep = ~np.take_along_axis(in_head, best.astype(np.int64), axis=1)
        both = np.concatenate([np.where(valid, positions, 0), best], axis=1)
        order = np.argsort(~np.concatenate([valid, keep], axis=1), axis=1, kind="stable")
        out[rows] = np.take_along_axis(both, order[:, :width], axis=1)
    return out


def _union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a | b
