"""The first stage of the two-stage recommender: every scorer's best tracks per user (their
union) and the features a learning-to-rank model reads for each (user, track) pair.

Features come only from the stage's own training matrices (``known``, ``liked``) and from the
catalogue's metadata, never from event aggregates computed over the whole training period (a
track's skip rate would include the very pairs the ranker learns to predict).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .metrics import Scorer

# Catalogue metadata columns of track_features the ranker reads as they are (the z_ audio and
# release features are standardised on training tracks by feature_engineering).
ITEM_METADATA_PREFIX = "z_"
ITEM_METADATA = ("explicit",)


@dataclass
class SideTables:
    """Catalogue and user metadata aligned to the model's item columns and user rows."""

    genres: sp.csr_matrix  # items x genres, 0/1
    favourites: sp.csr_matrix  # users x genres (the same genres), 0/1
    artists: sp.csr_matrix  # items x artists one-hot (an unknown artist: no column)
    item_metadata: np.ndarray  # items x len(item_metadata_names), float32
    item_metadata_names: list[str]
    premium: np.ndarray  # users, float32


@dataclass
class Candidates:
    """(user row, item column) pairs grouped by user, in user order, with their features."""

    users: np.ndarray
    items: np.ndarray
    features: np.ndarray  # float32, (n_pairs, len(names))
    names: list[str]

    def __len__(self) -> int:
        return len(self.users)

    def group_sizes(self) -> np.ndarray:
        """Pairs per user, in the order users appear (LightGBM's query groups)."""
        _, counts = np.unique(self.users, return_counts=True)
        return counts

    def labels(self, positives: sp.csr_matrix) -> np.ndarray:
        """1 where the pair is a held-out positive, else 0."""
        return np.asarray(positives[self.users, self.items]).ravel().astype(np.float32) > 0

    def subset(self, mask: np.ndarray) -> Candidates:
        return Candidates(self.users[mask], self.items[mask], self.features[mask], self.names)


def side_tables(
    track_features: pd.DataFrame,
    user_features: pd.DataFrame,
    user_ids: np.ndarray,
    track_ids: np.ndarray,
) -> SideTables:
    """Genres, favourite genres, artists and catalogue metadata in matrix order (a track or
    user the tables lack gets zeros)."""
    tracks = track_features.set_index("track_id").reindex(track_ids)
    users = user_features.set_index("user_id").reindex(user_ids)
    genre_columns = [c for c in tracks.columns if c.startswith("genre_")]
    genre_names = [c.removeprefix("genre_") for c in genre_columns]
    genres = tracks[genre_columns].fillna(0).to_numpy(np.float32)
    favourites = (
        np.column_stack(
            [
                users[f"fav_{g}"].fillna(0).to_numpy(np.float32)
                if f"fav_{g}" in users
                else np.zeros(len(users), np.float32)
                for g in genre_names
            ]
        )
        if genre_names
        else np.zeros((len(users), 0), np.float32)
    )
    artist_codes, _ = pd.factorize(tracks["artist_id"])
    has_artist = artist_codes >= 0
    artists = sp.csr_matrix(
        (
            np.ones(has_artist.sum(), np.float32),
            (np.flatnonzero(has_artist), artist_codes[has_artist]),
        ),
        shape=(len(tracks), max(int(artist_codes.max(initial=-1)) + 1, 1)),
    )
    metadata = [c for c in tracks.columns if c.startswith(ITEM_METADATA_PREFIX)]
    metadata += [c for c in ITEM_METADATA if c in tracks.columns]
    premium = users["premium_user"] if "premium_user" in users else pd.Series(0, index=users.index)
    return SideTables(
        genres=sp.csr_matrix(genres),
        favourites=sp.csr_matrix(favourites),
        artists=artists,
        item_metadata=tracks[metadata].astype(float).fillna(0.0).to_numpy(np.float32),
        item_metadata_names=metadata,
        premium=premium.astype(float).fillna(0.0).to_numpy(np.float32),
    )


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Each item's 0-based position in its row's descending order (ties: column order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return ranks


def candidates(
    scorers: dict[str, Scorer],
    users: np.ndarray,
    known: sp.csr_matrix,
    liked: sp.csr_matrix,
    side: SideTables,
    depth: int,
    batch: int = 256,
) -> Candidates:
    """The union of every scorer's ``depth`` best unplayed tracks for each of ``users``, with
    each scorer's score, rank and gap to the user's best score, the track's popularity and
    metadata, the user's activity, and how the track's genres and artist match the user's
    liked tracks and favourite genres."""
    known, liked = sp.csr_matrix(known), sp.csr_matrix(liked)
    likes_per_item = np.log1p(np.asarray(liked.sum(axis=0)).ravel()).astype(np.float32)
    plays_per_item = np.log1p(np.asarray(known.sum(axis=0)).ravel()).astype(np.float32)
    parts = [
        _batch(scorers, users[lo : lo + batch], known, liked, side, depth)
        for lo in range(0, len(users), batch)
    ]
    pairs_u = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.int64)
    pairs_i = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    per_pair = np.concatenate([p[2] for p in parts]) if parts else np.empty((0, 0), np.float32)
    n_known = np.log1p(np.diff(known.indptr)).astype(np.float32)
    n_liked = np.log1p(np.diff(liked.indptr)).astype(np.float32)
    columns = [
        per_pair,
        likes_per_item[pairs_i, None],
        plays_per_item[pairs_i, None],
        side.item_metadata[pairs_i],
        n_known[pairs_u, None],
        n_liked[pairs_u, None],
        side.premium[pairs_u, None],
    ]
    names = [
        *(f"{n}_{kind}" for n in scorers for kind in ("score", "rank", "gap")),
        "genre_share",
        "favourite_genre",
        "artist_share",
        "track_likes",
        "track_plays",
        *side.item_metadata_names,
        "user_plays",
        "user_likes",
        "user_premium",
    ]
    features = np.hstack(columns).astype(np.float32) if len(pairs_u) else np.empty((0, len(names)))
    return Candidates(pairs_u, pairs_i, features.astype(np.float32), names)


def _batch(
    scorers: dict[str, Scorer],
    users: np.ndarray,
    known: sp.csr_matrix,
    liked: sp.csr_matrix,
    side: SideTables,
    depth: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    played = known[users].toarray() > 0
    rows = {}
    for name, scorer in scorers.items():
        scores = np.array(scorer(users), dtype=np.float32)
        scores[played] = -np.inf
        rows[name] = scores
    ranks = {name: _ranks(scores) for name, scores in rows.items()}
    chosen = np.zeros(played.shape, dtype=bool)
    for r in ranks.values():
        chosen |= r < depth
    chosen &= ~played
    local, items = np.nonzero(chosen)
    per_pair = []
    for name, scores in rows.items():
        best = scores.max(axis=1)
        score = scores[local, items]
        per_pair += [score, np.log1p(ranks[name][local, items]), score - best[local]]
    liked_rows = liked[users]
    n_liked = np.maximum(np.asarray(liked_rows.sum(axis=1)).ravel(), 1.0)
    genre_profile = np.asarray((liked_rows @ side.genres).todense()) / n_liked[:, None]
    item_genres = side.genres[items]
    genre_share = np.asarray(item_genres.multiply(genre_profile[local]).sum(axis=1)).ravel()
    favourite = side.favourites[users].toarray()
    favourite_genre = np.asarray(item_genres.multiply(favourite[local]).sum(axis=1)).ravel() > 0
    artist_counts = (liked_rows @ side.artists).tocsr()
    item_artist = side.artists[items].tocsr()
    has_artist = np.diff(item_artist.indptr) > 0
    artist_share = np.zeros(len(items), np.float32)
    artist_col = item_artist.indices
    artist_share[has_artist] = (
        np.asarray(artist_counts[local[has_artist], artist_col]).ravel()
        / n_liked[local[has_artist]]
    )
    per_pair += [genre_share, favourite_genre, artist_share]
    return users[local], items, np.column_stack(per_pair).astype(np.float32)
