"""Group playlists: aggregation strategies over members' rankings, the history baseline, and the
group metrics of design.md §4. Everything works on a (members x items) score matrix at once.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

STRATEGIES = ("mean_rank", "least_misery", "borda", "gfar")


def member_ranks(scores: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """Rank of every item for every member (1 = best, ties averaged); excluded items rank last."""
    scores = np.asarray(scores, dtype=np.float64)
    if excluded is not None:
        scores = np.where(excluded[None, :], -np.inf, scores)
    return rankdata(-scores, method="average", axis=1)


def _best(values: np.ndarray, n: int, excluded: np.ndarray | None) -> np.ndarray:
    """The ``n`` items with the lowest ``values`` (stable: lower index wins ties)."""
    if excluded is not None:
        values = np.where(excluded, np.inf, values)
    n = min(n, int(np.isfinite(values).sum()))
    return np.argsort(values, kind="stable")[:n]


def mean_rank(ranks: np.ndarray, n: int, excluded=None, **_) -> np.ndarray:
    """Reference strategy: the items with the best mean rank across members."""
    return _best(ranks.mean(axis=0), n, excluded)


def least_misery(ranks: np.ndarray, n: int, excluded=None, **_) -> np.ndarray:
    """The items whose worst rank over members is best (no member hates them); mean breaks ties."""
    worst = ranks.max(axis=0)
    return _best(worst + ranks.mean(axis=0) / (ranks.shape[1] + 1), n, excluded)


def borda(ranks: np.ndarray, n: int, excluded=None, top: int = 100, **_) -> np.ndarray:
    """Borda count over each member's top ``top``: ``top + 1 - rank`` points, summed."""
    points = np.clip(top + 1 - ranks, 0, None).sum(axis=0)
    return _best(-points, n, excluded)


def gfar(ranks: np.ndarray, n: int, excluded=None, top: int = 100, **_) -> np.ndarray:
    """GFAR (Kaya, Bridge & Tintarev, RecSys 2020): greedy fairness-aware aggregation.

    Relevance ``p(i|u)`` is member u's Borda points for item i over their top ``top``,
    normalised to sum to 1. Each step adds the item maximising
    ``sum_u p(i|u) * prod_{j in playlist} (1 - p(j|u))``: the chance that some member not yet
    served finds it relevant, so every member gets something they like.
    """
    points = np.clip(top + 1 - ranks, 0, None)
    relevance = points / np.maximum(points.sum(axis=1, keepdims=True), 1e-12)
    unserved = np.ones(ranks.shape[0])
    available = np.ones(ranks.shape[1], dtype=bool) if excluded is None else ~excluded
    chosen: list[int] = []
    for _ in range(min(n, int(available.sum()))):
        gain = unserved @ relevance
        # Ties (e.g. nothing relevant left) fall back to the best mean rank.
        gain = np.where(available, gain - 1e-12 * ranks.mean(axis=0), -np.inf)
        item = int(np.argmax(gain))
        chosen.append(item)
        available[item] = False
        unserved *= 1 - relevance[:, item]
    return np.array(chosen, dtype=np.int64)


AGGREGATORS = {"mean_rank": mean_rank, "least_misery": least_misery, "borda": borda,
               "gfar": gfar}


def group_playlist(scores: np.ndarray, n: int, strategy: str = "mean_rank",
                   excluded: np.ndarray | None = None, top: int = 100) -> np.ndarray:
    """Item indices of an ``n``-track playlist for members with these score rows."""
    if strategy not in AGGREGATORS:
        raise ValueError(f"unknown group strategy {strategy!r}; choose from {STRATEGIES}")
    ranks = member_ranks(scores, excluded)
    return AGGREGATORS[strategy](ranks, n, excluded=excluded, top=top)


def history_baseline(histories: list[np.ndarray], n: int, rng: np.random.Generator
                     ) -> np.ndarray:
    """Reference baseline: ``n`` distinct tracks drawn at random from the members' histories."""
    pool = np.unique(np.concatenate(histories)) if histories else np.empty(0, dtype=np.int64)
    return rng.choice(pool, size=min(n, len(pool)), replace=False) if len(pool) else pool


def clustering_score(item_embeddings: np.ndarray, playlist: np.ndarray) -> float:
    """Mean Euclidean distance of the playlist's item embeddings from their centroid (lower is
    more coherent)."""
    if len(playlist) == 0:
        return float("nan")
    emb = item_embeddings[playlist]
    return float(np.linalg.norm(emb - emb.mean(axis=0), axis=1).mean())


def member_satisfaction(playlist: np.ndarray, liked: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per member: precision, recall and NDCG of the playlist (in order) against their likes."""
    n = max(len(playlist), 1)
    discounts = 1.0 / np.log2(np.arange(2, n + 2))
    out: dict[str, list[float]] = {"precision": [], "recall": [], "ndcg": []}
    for likes in liked:  # one entry per member: a handful, not a loop over events
        hit = np.isin(playlist, likes)
        out["precision"].append(hit.sum() / n)
        out["recall"].append(hit.sum() / len(likes) if len(likes) else np.nan)
        ideal = discounts[:min(len(likes), n)].sum()
        out["ndcg"].append((hit * discounts[:len(playlist)]).sum() / ideal if ideal else np.nan)
    return {k: np.array(v) for k, v in out.items()}
