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


def _average_ranks(sorted_ascending: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rank (1 = best, ties averaged) of ``values`` among a row sorted ascending, as
    ``rankdata(-row, method="average")`` gives it."""
    n = len(sorted_ascending)
    greater = n - np.searchsorted(sorted_ascending, values, side="right")
    greater_or_equal = n - np.searchsorted(sorted_ascending, values, side="left")
    return (greater + greater_or_equal + 1) / 2.0


def candidate_group_playlist(scores: np.ndarray, n: int, strategy: str = "mean_rank",
                             excluded: np.ndarray | None = None, top: int = 100,
                             candidates: int = 200) -> tuple[np.ndarray, int]:
    """``group_playlist`` without ranking every item for every member: the same playlist.

    Only the pool of items in some member's best ``cut`` (from ``max(candidates, top, n)``) is
    aggregated, with exact ranks from one value sort per member. An item outside the pool ranks
    below the cut for every member, which bounds what it could score; while that bound cannot
    rule such items out (members with little in common), the cut doubles, up to every item.
    Returns (item indices, the cut that sufficed).
    """
    if strategy not in AGGREGATORS:
        raise ValueError(f"unknown group strategy {strategy!r}; choose from {STRATEGIES}")
    scores = np.asarray(scores)
    if excluded is not None:
        scores = np.where(excluded[None, :], -np.inf, scores)
    n_members, n_items = scores.shape
    ordered = np.sort(scores, axis=1)
    cut = min(n_items, max(candidates, top, n))
    while True:
        threshold = ordered[:, n_items - cut]
        pool = np.flatnonzero((scores >= threshold[:, None]).any(axis=0))
        ranks = np.empty((n_members, len(pool)))
        for m in range(n_members):  # one row per member: a handful
            ranks[m] = _average_ranks(ordered[m], scores[m, pool])
        # The cut-th best score's rank: every item outside the pool ranks below it.
        floor = np.array([_average_ranks(ordered[m], threshold[m:m + 1])[0]
                          for m in range(n_members)])
        pool_excluded = None if excluded is None else excluded[pool]
        chosen = AGGREGATORS[strategy](ranks, n, excluded=pool_excluded, top=top)
        if len(pool) == n_items or _rules_out_the_rest(strategy, ranks[:, chosen], floor, n,
                                                       n_items, top):
            return pool[chosen], cut
        cut = min(n_items, 2 * cut)


def _rules_out_the_rest(strategy: str, chosen_ranks: np.ndarray, floor: np.ndarray, n: int,
                        n_items: int, top: int) -> bool:
    """Whether no item outside the pool (rank worse than ``floor`` for every member) could
    displace the last chosen item (ties go to the lower index, so the bound is strict)."""
    if chosen_ranks.shape[1] < n:
        return False
    last = chosen_ranks[:, -1]
    if strategy == "mean_rank":
        return bool(last.mean() < floor.mean())
    if strategy == "least_misery":
        return bool(last.max() + last.mean() / (n_items + 1)
                    < floor.max() + floor.mean() / (n_items + 1))
    # borda, gfar: outside the pool every member gives 0 points; every pick must have some.
    points = np.clip(top + 1 - chosen_ranks, 0, None).sum(axis=0)
    return bool(floor.min() > top and points.min() > 0)
