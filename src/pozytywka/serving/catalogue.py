"""What the service knows about tracks and users, aligned with the model's track order."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pozytywka.recsys.encoding import multi_hot

from .registry import UserRegistry
from .schemas import TrackOut


class UnknownIds(LookupError):
    """Ids the service cannot answer for (the API turns this into a 404)."""

    def __init__(self, kind: str, ids: list, hint: str = ""):
        self.kind, self.ids, self.hint = kind, ids, hint
        super().__init__(
            f"unknown {kind}{'s' if len(ids) > 1 else ''}: "
            f"{', '.join(map(str, ids))}{'. ' + hint if hint else ''}"
        )


class UnknownGenres(ValueError):
    def __init__(self, genres: list[str]):
        self.genres = genres
        shown = [g if len(g) <= 50 else f"{g[:50]}..." for g in genres[:5]]
        more = f" and {len(genres) - 5} more" if len(genres) > 5 else ""
        super().__init__(f"unknown genre(s) {shown}{more}; GET /genres lists the known ones")


def _as_list(value) -> list:
    """A genre list from Parquet (array), or [] for a missing one (NaN / None)."""
    return list(value) if isinstance(value, list | tuple | np.ndarray) else []


@dataclass
class UserProfile:
    favourite_genres: tuple[str, ...]
    premium: bool


@dataclass
class Catalogue:
    """Track metadata in the model's track order, the genre vocabulary, and user profiles
    (the user table in memory; users registered through the API since, from the shared
    registry on first use)."""

    track_ids: np.ndarray
    track_names: np.ndarray
    artist_ids: np.ndarray
    artist_names: np.ndarray
    explicit: np.ndarray
    genres: list[str]
    genre_tracks: sp.csr_matrix  # genres x tracks, 1 where the track's artist has it
    users: dict[int, UserProfile]
    track_index: dict[str, int] = field(init=False)
    genre_index: dict[str, int] = field(init=False)
    table_users: int = field(init=False)
    registry: UserRegistry | None = field(default=None, repr=False)

    def __post_init__(self):
        self.track_index = {t: i for i, t in enumerate(self.track_ids)}
        self.genre_index = {g: i for i, g in enumerate(self.genres)}
        self.table_users = len(self.users)

    @classmethod
    def build(
        cls,
        track_ids: np.ndarray,
        tracks: pd.DataFrame,
        artists: pd.DataFrame,
        users: pd.DataFrame,
        genres: list[str],
    ) -> Catalogue:
        info = (
            tracks.set_index("track_id")
            .reindex(track_ids)
            .merge(
                artists[["artist_id", "name", "genres"]].rename(columns={"name": "artist_name"}),
                on="artist_id",
                how="left",
            )
        )
        missing = info["name"].isna() & info["artist_id"].isna()
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} model tracks are missing from the track "
                "table: the model and the data come from different runs"
            )
        genre_tracks = sp.csr_matrix(multi_hot(info["genres"], "", list(genres)).to_numpy().T)
        profiles = {
            int(u): UserProfile(tuple(_as_list(f)), bool(p))
            for u, f, p in zip(
                users["user_id"],
                users["favourite_genres"],
                users["premium_user"].fillna(False),
                strict=True,
            )
        }
        return cls(
            np.asarray(track_ids),
            info["name"].fillna("").to_numpy(object),
            info["artist_id"].fillna("").to_numpy(object),
            info["artist_name"].fillna("").to_numpy(object),
            info["explicit"].fillna(False).to_numpy(bool),
            list(genres),
            genre_tracks,
            profiles,
        )

    def register(self, record: dict) -> UserProfile:
        """Know a user from a raw users-export record (favourite genres, premium flag)."""
        profile = UserProfile(
            tuple(_as_list(record.get("favourite_genres"))), bool(record.get("premium_user"))
        )
        self.users[int(record["user_id"])] = profile
        return profile

    def profile(self, user_id: int) -> UserProfile | None:
        """The user's profile: the user table's, else the registry's (whichever worker
        registered them), else None."""
        found = self.users.get(user_id)
        if found is None and self.registry is not None:
            record = self.registry.get(user_id)
            if record is not None:
                found = self.register(record)
        return found

    def unknown_users(self, user_ids: list[int]) -> set[int]:
        """Which of ``user_ids`` neither the user table nor the registry knows."""
        unknown = {u for u in user_ids if u not in self.users}
        if unknown and self.registry is not None:
            unknown -= self.registry.known(unknown)
        return unknown

    def user_count(self) -> int:
        """Users of the table plus users registered through the API."""
        registered = self.registry.count() if self.registry is not None else 0
        return self.table_users + registered

    def track_positions(self, track_ids: list[str]) -> np.ndarray:
        unknown = [t for t in track_ids if t not in self.track_index]
        if unknown:
            raise UnknownIds("track", unknown)
        return np.array([self.track_index[t] for t in track_ids], dtype=np.int64)

    def filter_out(
        self,
        include_genres: list[str] | None = None,
        exclude_genres: list[str] | None = None,
        exclude_explicit: bool = False,
    ) -> np.ndarray | None:
        """Tracks the filters remove (True = removed), or None when nothing is filtered."""
        asked = [*(include_genres or []), *(exclude_genres or [])]
        unknown = sorted({g for g in asked if g not in self.genre_index})
        if unknown:
            raise UnknownGenres(unknown)
        out = None
        if include_genres:
            idx = [self.genre_index[g] for g in include_genres]
            out = np.asarray(self.genre_tracks[idx].sum(axis=0)).ravel() == 0
        if exclude_genres:
            idx = [self.genre_index[g] for g in exclude_genres]
            hit = np.asarray(self.genre_tracks[idx].sum(axis=0)).ravel() > 0
            out = hit if out is None else out | hit
        if exclude_explicit:
            out = self.explicit.copy() if out is None else out | self.explicit
        return out

    def describe_tracks(
        self, positions: np.ndarray, scores: np.ndarray | None = None
    ) -> list[TrackOut]:
        """The tracks at ``positions`` as the API describes them (built, not re-validated)."""
        out = []
        for rank, i in enumerate(positions):
            item: dict = {
                "track_id": self.track_ids[i],
                "name": self.track_names[i],
                "artist_id": self.artist_ids[i],
                "artist": self.artist_names[i],
                "explicit": bool(self.explicit[i]),
            }
            if scores is not None:
                item["score"] = round(float(scores[rank]), 6)
            out.append(TrackOut.model_construct(**item))
        return out
