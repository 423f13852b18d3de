"""Turn clean generated tables into dirty JSON Lines exports, recording exactly what was injected.

Defects that make a record unusable are added as *extra* lines (a junk copy of a real record), so
cleaning must drop exactly those and keep every original record. Defects that can be repaired are
made *in place*, on disjoint records, so cleaning must repair them without losing the record. The
returned manifest uses the defect names of the data-quality report, so a test can compare both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .generator import base62_ids
from .jsonl import event_lines, frame_lines, iso_ms_strings, join_lines

OUT_OF_RANGE_VALUES = {
    "popularity": [150, -5],
    "duration_ms": [-1000, 0],
    "danceability": [1.5, -0.2],
    "energy": [1.2],
    "valence": [-0.4],
    "key": [13, -1],
    "loudness": [7.5, -80.0],
    "tempo": [-20.0, 0.0],
    "explicit": [2],
}


def _count(rate: float, n: int) -> int:
    return 0 if rate <= 0 or n == 0 else max(1, round(rate * n))


class _Injector:
    """Collects in-place edits on disjoint rows and extra junk rows for one file."""

    def __init__(self, df: pd.DataFrame, rng: np.random.Generator, to_lines=frame_lines):
        self.df = df.copy()
        self.to_lines = to_lines
        self.rng = rng
        self.free = rng.permutation(len(df))  # rows not yet edited in place
        self.extra: list[pd.DataFrame] = []  # junk copies; their index is the source row
        self.counts: dict[str, int] = {}

    def take(self, kind: str, n: int) -> np.ndarray:
        """Reserve ``n`` untouched rows for an in-place defect."""
        n = min(n, len(self.free))
        rows, self.free = self.free[:n], self.free[n:]
        if n:
            self.counts[kind] = self.counts.get(kind, 0) + n
        return rows

    def add_copies(self, kind: str, n: int, edit, sources: np.ndarray | None = None) -> None:
        """Add ``n`` copies of random original rows (drawn from ``sources`` positions if
        given), each altered by ``edit(copy_frame)``."""
        pool = np.arange(len(self.df)) if sources is None else sources
        if n == 0 or len(pool) == 0:
            return
        src = pool[self.rng.integers(0, len(pool), n)]
        copies = self.df.iloc[src].copy()
        copies.index = src
        edit(copies)
        self.extra.append(copies)
        self.counts[kind] = self.counts.get(kind, 0) + n

    def render(self, n_malformed: int, n_duplicates: int) -> str:
        """Serialise with extras, exact duplicate lines and truncated lines spread through it.

        Originals keep their order; each junk line lands somewhere after the record it copies,
        as a re-sent or conflicting record would, so "the first record wins" keeps the original.
        """
        n = len(self.df)
        main = self.to_lines(self.df)
        extra = pd.concat(self.extra) if self.extra else self.df.iloc[:0]
        dup_src = self.rng.integers(0, n, n_duplicates)
        bad_src = self.rng.integers(0, n, n_malformed)
        cut = [line[: int(self.rng.integers(1, max(len(line) - 2, 2)))] + "\n"
               for line in main.take(pa.array(bad_src, pa.int64())).to_pylist()]
        lines = pa.concat_arrays([main, self.to_lines(extra),
                                  main.take(pa.array(dup_src, pa.int64())),
                                  pa.array(cut, pa.large_string())])
        src = np.concatenate([extra.index.to_numpy(dtype=np.int64), dup_src, bad_src])
        after = src + self.rng.uniform(0.1, 1.0, len(src)) * (n - src)
        pos = np.concatenate([np.arange(n, dtype=float), after])
        text = join_lines(lines.take(pa.array(np.argsort(pos, kind="stable"))))
        if n_duplicates:
            self.counts["duplicate_line"] = n_duplicates
        if n_malformed:
            self.counts["malformed_line"] = n_malformed
        return text


def _entity_defects(inj: _Injector, key: str, rates: dict) -> None:
    n = len(inj.df)

    def null_key(c):
        c[key] = None

    def conflict(c):
        c["name"] = c["name"].astype(str) + " (alt)"

    inj.df[key] = inj.df[key].astype(object)
    inj.add_copies("null_id", _count(rates["null_id"], n), null_key)
    inj.add_copies("conflicting_duplicate_id", _count(rates["conflicting_duplicate_id"], n),
                   conflict)


def dirty_users(users: pd.DataFrame, rates: dict, rng) -> tuple[str, dict]:
    inj = _Injector(users, rng)
    _entity_defects(inj, "user_id", rates)
    rows = inj.take("type_coerced", _count(rates["type_coerced"], len(users)))
    half = len(rows) // 2
    inj.df["premium_user"] = inj.df["premium_user"].astype(object)
    inj.df["favourite_genres"] = inj.df["favourite_genres"].astype(object)
    idx = inj.df.index
    inj.df.loc[idx[rows[:half]], "premium_user"] = inj.df.loc[idx[rows[:half]], "premium_user"].map(
        lambda b: "true" if b else "false")
    inj.df.loc[idx[rows[half:]], "favourite_genres"] = inj.df.loc[
        idx[rows[half:]], "favourite_genres"].map(", ".join)
    text = inj.render(_count(rates["malformed_line"], len(users)),
                      _count(rates["duplicate_line"], len(users)))
    return text, inj.counts


def dirty_artists(artists: pd.DataFrame, rates: dict, rng) -> tuple[str, dict]:
    inj = _Injector(artists, rng)
    _entity_defects(inj, "id", rates)
    rows = inj.take("type_coerced", _count(rates["type_coerced"], len(artists)))
    idx = inj.df.index[rows]
    inj.df["genres"] = inj.df["genres"].astype(object)
    inj.df.loc[idx, "genres"] = inj.df.loc[idx, "genres"].map(";".join)
    text = inj.render(_count(rates["malformed_line"], len(artists)),
                      _count(rates["duplicate_line"], len(artists)))
    return text, inj.counts


def dirty_tracks(tracks: pd.DataFrame, rates: dict, rng) -> tuple[str, dict]:
    n = len(tracks)
    inj = _Injector(tracks, rng)
    _entity_defects(inj, "id", rates)
    df = inj.df
    for col in ["popularity", "duration_ms", "key", "explicit", "loudness", "tempo",
                "danceability", "energy", "valence", "release_date", "id_artist"]:
        df[col] = df[col].astype(object)
    rows = inj.take("out_of_range", _count(rates["out_of_range"], n))
    fields = list(OUT_OF_RANGE_VALUES)
    for r, f in zip(rows, rng.integers(0, len(fields), len(rows)), strict=True):
        options = OUT_OF_RANGE_VALUES[fields[f]]
        df.iat[r, df.columns.get_loc(fields[f])] = options[int(rng.integers(len(options)))]
    rows = inj.take("type_coerced", _count(rates["type_coerced"], n))
    df.iloc[rows, df.columns.get_loc("popularity")] = df["popularity"].iloc[rows].astype(str)
    rows = inj.take("invalid_release_date", _count(rates["invalid_value"], n))
    df.iloc[rows, df.columns.get_loc("release_date")] = rng.choice(
        ["unknown", "2024-13-45", "20x4", ""], len(rows))
    rows = inj.take("unknown_artist_id", _count(rates["unknown_id"], n))
    df.iloc[rows, df.columns.get_loc("id_artist")] = base62_ids(rng, len(rows))
    text = inj.render(_count(rates["malformed_line"], n), _count(rates["duplicate_line"], n))
    return text, inj.counts


def dirty_sessions(events: pd.DataFrame, known_users: np.ndarray, rates: dict, rng
                   ) -> tuple[str, dict]:
    n = len(events)
    df = events.copy()
    ns = df["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    df["timestamp"] = pd.Series(pd.array(iso_ms_strings(ns.to_numpy().view(np.int64)),
                                         dtype="str"), index=df.index)
    df["user_id"] = df["user_id"].astype("Int64")
    for col in ["track_id", "event_type"]:  # categorical -> text, decoded by Arrow
        df[col] = pd.Series(pd.array(pc.cast(pa.array(df[col]), pa.large_string()), dtype="str"),
                            index=df.index)
    inj = _Injector(df, rng, to_lines=event_lines)
    df = inj.df
    on_track = np.flatnonzero(df["event_type"].isin(["play", "skip", "like"]).to_numpy())

    rows = inj.take("timestamp_repaired", _count(rates["format_variant"], n) * 10)
    ts = df["timestamp"].iloc[rows]
    variant = rng.integers(0, 4, len(rows))
    ts = np.where(variant == 0, ts.str.replace("T", " "),
                  np.where(variant == 1, ts + "Z",
                           np.where(variant == 2, ts + "+00:00", ts.str.slice(0, 19))))
    df.iloc[rows, df.columns.get_loc("timestamp")] = ts
    rows = inj.take("event_type_repaired", _count(rates["format_variant"], n))
    df.iloc[rows, df.columns.get_loc("event_type")] = (
        df["event_type"].iloc[rows].str.upper().to_numpy())

    k_null, k_unknown = _count(rates["null_id"], n), _count(rates["unknown_id"], n)
    inj.add_copies("null_user_id", k_null, lambda c: c.__setitem__("user_id", pd.NA))
    inj.add_copies("null_track_id", k_null, lambda c: c.__setitem__("track_id", None),
                   sources=on_track)
    max_user = int(known_users.max())
    inj.add_copies("unknown_user_id", k_unknown, lambda c: c.__setitem__(
        "user_id", rng.integers(max_user + 1, max_user + 10_000, len(c))))
    inj.add_copies("unknown_track_id", k_unknown, lambda c: c.__setitem__(
        "track_id", base62_ids(rng, len(c))), sources=on_track)
    k_invalid = _count(rates["invalid_value"], n)
    inj.add_copies("unknown_event_type", k_invalid, lambda c: c.__setitem__(
        "event_type", rng.choice(["pause", "seek", "share", ""], len(c))))
    inj.add_copies("invalid_timestamp", k_invalid, lambda c: c.__setitem__(
        "timestamp", rng.choice(["yesterday", "2024-02-30T25:61:00", ""], len(c))))
    text = inj.render(_count(rates["malformed_line"], n), _count(rates["duplicate_line"], n))
    return text, inj.counts

