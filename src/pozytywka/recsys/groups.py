"""Group playlists: aggregation strategies over members' rankings, the history baseline, and the
group metrics of docs/design.md §4. Everything works on a (members x items) score matrix at once.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger(__name__)

STRATEGIES = ("mean_rank", "least_misery", "borda", "gfar")


def member_ranks(scores: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """Rank of every item for every member (1 = best, ties averaged); excluded items rank last."""
    scores = np.asarray(scores, dtype=np.float64)
    if excluded is not None:
        scores = np.where(excluded[None, :], -np.inf, scores)
    negated = -scores
    order = np.argsort(negated, axis=1)  # ties are averaged below, so any sort will do
    ascending = np.take_along_axis(negated, order, axis=1)
    n = ascending.shape[1]
    positions = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), ascending.shape)
    starts = np.ones(ascending.shape, dtype=bool)  # first of a run of equal scores
    starts[:, 1:] = ascending[:, 1:] != ascending[:, :-1]
    ends = np.ones(ascending.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, positions, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, positions, n + 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(ascending)
    np.put_along_axis(ranks, order, (first + last) / 2, axis=1)
    return ranks


def _best(values: np.ndarray, n: int, excluded: np.ndarray | None) -> np.ndarray:
    """The ``n`` items with the lowest ``values`` (stable: lower index wins ties)."""
    if excluded is not None:
        values = np.where(excluded, np.inf, values)
    n = min(n, int(np.isfinite(values).sum()))
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if 4 * n < len(values):  # sort only the items up to the n-th value (ties there included)
        cut = np.partition(values, n - 1)[n - 1]
        within = np.flatnonzero(values <= cut)
        return within[np.argsort(values[within], kind="stable")[:n]]
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
    for _step in range(min(n, int(available.sum()))):
        gain = unserved @ relevance
        # Ties (e.g. nothing relevant left) fall back to the best mean rank.
        gain = np.where(available, gain - 1e-12 * ranks.mean(axis=0), -np.inf)
        item = int(np.argmax(gain))
        chosen.append(item)
        available[item] = False
        unserved *= 1 - relevance[:, item]
    return np.array(chosen, dtype=np.int64)


AGGREGATORS = {"mean_rank": mean_rank, "least_misery": least_misery, "borda": borda, "gfar": gfar}


def group_playlist(
    scores: np.ndarray,
    n: int,
    strategy: str = "mean_rank",
    excluded: np.ndarray | None = None,
    top: int = 100,
) -> np.ndarray:
    """Item indices of an ``n``-track playlist for members with these score rows."""
    return _aggregate(strategy, member_ranks(scores, excluded), n, excluded, top)


def _aggregate(
    strategy: str, ranks: np.ndarray, n: int, excluded: np.ndarray | None, top: int
) -> np.ndarray:
    if strategy not in AGGREGATORS:
        raise ValueError(f"unknown group strategy {strategy!r}; choose from {STRATEGIES}")
    return AGGREGATORS[strategy](ranks, n, excluded=excluded, top=top)


def history_baseline(histories: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
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
        ideal = discounts[: min(len(likes), n)].sum()
        out["ndcg"].append((hit * discounts[: len(playlist)]).sum() / ideal if ideal else np.nan)
    return {k: np.array(v) for k, v in out.items()}


def _tie_averaged_positions(descending: np.ndarray) -> np.ndarray:
    """1-based positions in a descending array, ties sharing their average position."""
    n = len(descending)
    positions = np.arange(1, n + 1, dtype=np.float64)
    if n < 2 or not (descending[1:] == descending[:-1]).any():
        return positions
    new = np.empty(n, dtype=bool)  # first of a run of equal values
    new[0] = True
    np.not_equal(descending[1:], descending[:-1], out=new[1:])
    first = np.maximum.accumulate(np.where(new, positions, 0))
    ends = np.empty(n, dtype=bool)  # last of a run
    ends[:-1], ends[-1] = new[1:], True
    last = np.minimum.accumulate(np.where(ends, positions, n + 1)[::-1])[::-1]
    return (first + last) / 2


def _ranked(row: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``items`` with their exact ranks over ``row``, given that every item scoring at least
    their lowest score is among them."""
    values = row[items]
    if len(values) < 2 or (values[:-1] >= values[1:]).all():  # already best first
        return items, _tie_averaged_positions(values)
    order = np.argsort(-values, kind="stable")  # nearly sorted input: about linear
    ranks = np.empty(len(items))
    ranks[order] = _tie_averaged_positions(values[order])
    return items, ranks


def _head(row: np.ndarray, depth: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Items scoring at least a threshold that about ``depth`` items reach (estimated from
    every ``stride``-th score), and their exact ranks over the whole row (1 = best, ties
    averaged, as ``member_ranks``): every other item scores lower, so ranks below them.
    Excluded items (-inf) are never in a head; nothing is chosen among them anyway."""
    sample = row[::stride]
    k = min(len(sample), max(1, -(-depth // stride)))
    threshold = max(np.partition(sample, len(sample) - k)[len(sample) - k], np.finfo(float).min)
    return _ranked(row, np.flatnonzero(row >= threshold))


def _precomputed_head(
    row: np.ndarray, best: np.ndarray, margin: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """A head from a member's precomputed best items (best first, from a batch scoring that
    may differ from ``row`` in the last bits): those beating the lowest by ``margin``, so no
    item outside can score as high; excluded ones dropped."""
    values = row[best]
    keep = (values > values.min() + margin) & np.isfinite(values)
    return _ranked(row, best[keep])


def candidate_group_playlist(
    scores: np.ndarray,
    n: int,
    strategy: str = "mean_rank",
    excluded: np.ndarray | None = None,
    top: int = 100,
    candidates: int = 200,
    precomputed: list[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, int]:
    """``group_playlist``'s playlist, without ranking every item for every member.

    Each member ranks only their head: about ``depth`` best items (from ``candidates`` on),
    found with one threshold, ranked by one small sort. Below a member's head an item's rank
    is bounded by the head's size. The strategy runs on the union of heads with those bounds;
    if the bounds prove that no item outside could displace a pick (every pick ranked
    exactly, everything else strictly worse), that is the playlist, else the heads grow
    (four-fold, up to the full computation). GFAR breaks ties by mean rank, which the bounds
    do not pin down, so it always takes the full computation. ``precomputed`` gives, per
    member, their best items (best first) scored ahead of time: the first heads, unsorted.
    Returns (item indices, the depth that sufficed; the item count for the full computation).
    """
    if strategy not in AGGREGATORS:
        raise ValueError(f"unknown group strategy {strategy!r}; choose from {STRATEGIES}")
    scores = np.asarray(scores)
    if excluded is not None:
        scores = np.where(excluded[None, :], -np.inf, scores)
    n_members, n_items = scores.shape
    available = n_items if excluded is None else n_items - int(excluded.sum())
    depth = max(candidates, top + 1, n)
    stride = max(1, n_items // 2048)
    if precomputed is not None and any(p is not None for p in precomputed):
        depth = max(depth, *(len(p) for p in precomputed if p is not None))
    first = True
    while strategy != "gfar":
        heads = [
            _precomputed_head(row, best)
            if first and best is not None
            else _head(row, depth, stride)
            for row, best in zip(scores, precomputed or [None] * n_members, strict=True)
        ]
        first = False
        pool, floor, ranks, exact = _pooled_ranks(heads, n_items)
        pool_excluded = None if excluded is None else excluded[pool]
        chosen = AGGREGATORS[strategy](ranks, n, excluded=pool_excluded, top=top)
        if _proved(
            strategy, ranks, exact, chosen, floor, n, n_items, top, pool_excluded, available
        ):
            return pool[chosen], depth
        if depth >= n_items:
            break
        depth *= 4
    return group_playlist(scores, n, strategy, excluded, top), n_items


def _pooled_ranks(
    heads: list[tuple[np.ndarray, np.ndarray]], n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Over the union of the members' heads: (pool items, each member's bound below their
    head, members x pool ranks (the bound outside a head), which of those ranks are exact)."""
    in_some_head = np.zeros(n_items, dtype=bool)
    for items, _ in heads:
        in_some_head[items] = True
    pool = np.flatnonzero(in_some_head)
    position = np.empty(n_items, dtype=np.int64)
    position[pool] = np.arange(len(pool))
    floor = np.array([len(items) + 1.0 for items, _ in heads])
    ranks = np.repeat(floor[:, None], len(pool), axis=1)
    exact = np.zeros((len(heads), len(pool)), dtype=bool)
    for m, (items, head_ranks) in enumerate(heads):  # a handful of members
        at = position[items]
        ranks[m, at] = head_ranks
        exact[m, at] = True
    return pool, floor, ranks, exact


def _proved(
    strategy: str,
    ranks: np.ndarray,
    exact: np.ndarray,
    chosen: np.ndarray,
    floor: np.ndarray,
    n: int,
    n_items: int,
    top: int,
    excluded: np.ndarray | None,
    available: int,
) -> bool:
    """Whether the picks on the pool (with rank bounds) are the picks on every item."""
    if len(chosen) < n and floor.min() <= available:  # items beyond every head remain
        return False
    if len(chosen) == 0:
        return True
    if strategy == "borda":  # below a head of more than ``top`` items, no member gives points
        points = np.clip(top + 1 - ranks[:, chosen], 0, None).sum(axis=0)
        return bool(floor.min() > top + 1 and points.min() > 0)

    def value(r: np.ndarray) -> np.ndarray:  # lower is better; grows with every rank
        if strategy == "mean_rank":
            return r.mean(axis=0)
        return r.max(axis=0) + r.mean(axis=0) / (n_items + 1)

    if not exact[:, chosen].all():
        return False
    last = value(ranks[:, chosen[-1:]])[0]
    bounded = ~exact.all(axis=0)
    if excluded is not None:
        bounded &= ~excluded
    rest = value(floor[:, None])[0]
    if bounded.any():
        rest = min(rest, value(ranks[:, bounded]).min())
    return bool(rest > last)


# ---- the group protocol of docs/design.md §4 -----------------------------------------------


def sample_groups(
    n_users: int,
    n_groups: int,
    min_size: int,
    max_size: int,
    seed: int,
    eligible: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Random groups of distinct users, sizes uniform in ``min_size..max_size`` (capped at the
    number of users there are); none if fewer than ``min_size`` users are eligible."""
    rng = np.random.default_rng(seed)
    pool = np.arange(n_users) if eligible is None else np.asarray(eligible)
    if len(pool) < min_size:
        return []
    sizes = rng.integers(min_size, max_size + 1, n_groups)
    return [rng.choice(pool, size=min(s, len(pool)), replace=False) for s in sizes]


def known_to_group(known: sp.csr_matrix, members: np.ndarray, policy: str) -> np.ndarray | None:
    """Tracks a group playlist leaves out: those ``all_members`` (or ``any_member``) played.

    ``any_member`` would hide most of the members' held-out likes (a track one member played
    is often what another will like), so the evaluation default is ``all_members``.
    """
    if policy == "none":
        return None
    known, members = known.tocsr(), np.asarray(members, dtype=np.int64)
    # the sum of the members' rows, as one count over their stored entries
    entries = [np.arange(known.indptr[m], known.indptr[m + 1]) for m in members]
    at = np.concatenate(entries) if entries else np.empty(0, dtype=np.int64)
    played_by = np.bincount(known.indices[at], known.data[at], minlength=known.shape[1])
    if policy == "all_members":
        return played_by >= len(members)
    if policy == "any_member":
        return played_by > 0
    raise ValueError(f"groups.exclude_known must be none, all_members or any_member: {policy!r}")


def _satisfaction_row(
    playlist: np.ndarray, liked: list[np.ndarray], item_embeddings: np.ndarray
) -> dict[str, float]:
    sat = member_satisfaction(playlist, liked)
    has_likes = np.array([len(x) > 0 for x in liked])
    # Members without held-out likes cannot be satisfied measurably: left out.
    precision, recall = sat["precision"][has_likes], sat["recall"][has_likes]
    measurable = bool(has_likes.any())
    return {
        "clustering": clustering_score(item_embeddings, playlist),
        "precision_mean": float(np.mean(precision)) if measurable else np.nan,
        "precision_min": float(np.min(precision)) if measurable else np.nan,
        "recall_mean": float(np.mean(recall)) if measurable else np.nan,
        "recall_min": float(np.min(recall)) if measurable else np.nan,
        "ndcg_mean": float(np.nanmean(sat["ndcg"])) if measurable else np.nan,
        "ndcg_min": float(np.nanmin(sat["ndcg"])) if measurable else np.nan,
        "min_max_precision_ratio": (
            float(precision.min() / precision.max())
            if measurable and precision.max() > 0
            else np.nan
        ),
        "zero_recall_share": float(np.mean(recall == 0)) if measurable else np.nan,
    }


def evaluate_groups(
    scorers: dict,
    groups: list[np.ndarray],
    item_embeddings: np.ndarray,
    known: sp.csr_matrix,
    test: sp.csr_matrix,
    config: dict,
    history_seed: int | None = None,
) -> pd.DataFrame:
    """One row per (group, scorer, strategy): the clustering score of the playlist and its
    members' satisfaction with their held-out likes. ``scorers`` maps a name to a scorer
    (``users -> scores``); with ``history_seed`` the random-from-history baseline is added
    (scorer ``baseline``, strategy ``history``)."""
    rng = np.random.default_rng(history_seed) if history_seed is not None else None
    rows = []
    for g, members in enumerate(groups):
        liked = [test.indices[test.indptr[m] : test.indptr[m + 1]] for m in members]
        excluded = known_to_group(known, members, config["exclude_known"])
        playlists = {}
        if rng is not None:
            histories = [known.indices[known.indptr[m] : known.indptr[m + 1]] for m in members]
            playlists[("baseline", "history")] = history_baseline(histories, config["length"], rng)
        for name, scorer in scorers.items():
            ranks = member_ranks(scorer(members), excluded)  # once for every strategy
            for strategy in config["strategies"]:
                top = config["gfar_top"] if strategy == "gfar" else config["top"]
                playlists[(name, strategy)] = _aggregate(
                    strategy, ranks, config["length"], excluded, top
                )
        rows += [
            {
                "group": g,
                "size": len(members),
                "scorer": name,
                "strategy": strategy,
                **_satisfaction_row(playlist, liked, item_embeddings),
            }
            for (name, strategy), playlist in playlists.items()
        ]
    return pd.DataFrame(rows)


def protocol_groups(n_users: int, config: dict) -> list[np.ndarray]:
    """The evaluation's groups (design §4: ``n_groups`` groups of ``min_size..max_size``),
    scaled down to the users there are, with the reason logged."""
    low, high = config["min_size"], min(config["max_size"], n_users)
    if n_users < low:
        logger.warning("Group playlists not evaluated: %d users, groups need %d", n_users, low)
        return []
    if high < config["max_size"]:
        logger.warning(
            "Only %d users: groups of %d-%d members instead of %d-%d",
            n_users,
            low,
            high,
            low,
            config["max_size"],
        )
    return sample_groups(n_users, config["n_groups"], low, high, config["seed"])
