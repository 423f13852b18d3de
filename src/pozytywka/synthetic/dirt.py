"""Turn clean generated tables into dirty JSON Lines exports, recording exactly what was injected.

Defects that make a record unusable are added as *extra* lines (a junk copy of a real record), so
cleaning must drop exactly those and keep every original record. Defects that can be repaired, and
valid variants of the contract that cleaning only normalises (other event-type spellings and
timestamp forms, stray extra keys), are made *in place*, on disjoint records, so cleaning must keep
the record. The returned manifest, ``{"dropped"|"repaired"|"normalised": {kind: count}}`` per file,
uses the categories and kind names of the data-quality report, so a test can compare both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .generator import base62_ids
from .jsonl import event_lines, frame_lines, iso_ms_strings, join_lines

OUT_OF_RANGE_VALUES: dict[str, list[float]] = {
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
# A stray key outside the contract, as real exports carry, per file (put first in the record).
EXTRA_KEYS = {
    "users": '"id":-1',
    "artists": '"followers":null',
    "tracks": '"album_id":-1',
    "sessions": '"id":-1',
}
# Spellings of event types the service's exports use (design.md §1), per canonical type.
EVENT_TYPE_VARIANTS = {
    "advertisement": ["advertisment", "ADVERTISEMENT", "Advertisment"],
    "buy_premium": ["BUY_PREMIUM"],
    "play": ["PLAY", " play"],
    "skip": ["SKIP"],
    "like": ["LIKE", "Like "],
}
_HOUR_NS = 3_600_000_000_000


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
        self.extra_key_rows = np.zeros(0, dtype=np.int64)  # rows given a stray key...
        self.extra_key = ""  # ...this one, as JSON text ('"id":-1')
        self.counts: dict[str, dict[str, int]] = {"dropped": {}, "repaired": {}, "normalised": {}}

    def _count_as(self, category: str, kind: str, n: int) -> None:
        if n:
            self.counts[category][kind] = self.counts[category].get(kind, 0) + n

    def reserve(self, n: int, pool: np.ndarray | None = None) -> np.ndarray:
        """``n`` untouched rows (from the positions ``pool`` if given), now reserved."""
        free = self.free if pool is None else self.free[np.isin(self.free, pool)]
        rows = free[:n]
        self.free = self.free[~np.isin(self.free, rows)]
        return rows

    def take(self, category: str, kind: str, n: int, pool: np.ndarray | None = None) -> np.ndarray:
        """Reserve ``n`` untouched rows for an in-place edit reported as ``category``/``kind``."""
        rows = self.reserve(n, pool)
        self._count_as(category, kind, len(rows))
        return rows

    def add_extra_keys(self, n: int, key: str) -> None:
        """Give ``n`` untouched records the stray ``key`` (JSON text) outside the contract."""
        self.extra_key_rows = self.take("normalised", "extra_field", n)
        self.extra_key = key

    def add_copies(self, kind: str, n: int, edit, sources: np.ndarray | None = None) -> None:
        """Add ``n`` copies of random original rows (drawn from ``sources`` positions if
        given), each altered by ``edit(copy_frame)``: junk the cleaning must drop as ``kind``."""
        pool = np.arange(len(self.df)) if sources is None else sources
        if n == 0 or len(pool) == 0:
            return
        src = pool[self.rng.integers(0, len(pool), n)]
        copies = self.df.iloc[src].copy()
        copies.index = src
        edit(copies)
        self.extra.append(copies)
        self._count_as("dropped", kind, n)

    def _main_lines(self) -> pa.Array:
        """The original records as lines, the stray key put first in the chosen ones."""
        main = self.to_lines(self.df)
        rows = np.sort(self.extra_key_rows)
        if len(rows) == 0:
            return main
        with_key = pc.binary_join_element_wise(
            pa.scalar("{" + self.extra_key + ",", main.type),
            pc.utf8_slice_codeunits(main.take(pa.array(rows)), 1),
            pa.scalar("", main.type),
        )
        order = np.arange(len(main))
        order[rows] = len(main) + np.arange(len(rows))  # the edited line in place of its row
        return pa.concat_arrays([main, with_key]).take(pa.array(order))

    def render(self, n_malformed: int, n_duplicates: int) -> str:
        """Serialise with extras, exact duplicate lines and truncated lines spread through it.

        Originals keep their order; each junk line lands somewhere after the record it copies,
        as a re-sent or conflicting record would, so "the first record wins" keeps the original.
        """
        n = len(self.df)
        main = self._main_lines()
        extra = pd.concat(self.extra) if self.extra else self.df.iloc[:0]
        dup_src = self.rng.integers(0, n, n_duplicates)
        bad_src = self.rng.integers(0, n, n_malformed)
        cut = [
            line[: int(self.rng.integers(1, max(len(line) - 2, 2)))] + "\n"
            for line in main.take(pa.array(bad_src, pa.int64())).to_pylist()
        ]
        lines = pa.concat_arrays(
            [
                main,
                self.to_lines(extra).cast(main.type),
                main.take(pa.array(dup_src, pa.int64())),
                pa.array(cut, main.type),
            ]
        )
        src = np.concatenate([extra.index.to_numpy(dtype=np.int64), dup_src, bad_src])
        after = src + self.rng.uniform(0.1, 1.0, len(src)) * (n - src)
        pos = np.concatenate([np.arange(n, dtype=float), after])
        text = join_lines(lines.take(pa.array(np.argsort(pos, kind="stable"))))
        self._count_as("dropped", "duplicate_line", n_duplicates)
        self._count_as("dropped", "malformed_line", n_malformed)
        return text


def _entity_defects(inj: _Injector, key: str, rates: dict) -> None:
    n = len(inj.df)

    def null_key(c):
        c[key] = None

    def conflict(c):
        c["name"] = c["name"].astype(str) + " (alt)"

    inj.df[key] = inj.df[key].astype(object)
    inj.add_copies("null_id", _count(rates["null_id"], n), null_key)
    inj.add_copies(
        "conflicting_duplicate_id", _count(rates["conflicting_duplicate_id"], n), conflict
    )


def dirty_users(users: pd.DataFrame, rates: dict, rng) -> tuple[str, dict]:
    inj = _Injector(users, rng)
    _entity_defects(inj, "user_id", rates)
    rows = inj.take("repaired", "type_coerced", _count(rates["type_coerced"], len(users)))
    half = len(rows) // 2
    inj.df["premium_user"] = inj.df["premium_user"].astype(object)
    inj.df["favourite_genres"] = inj.df["favourite_genres"].astype(object)
    idx = inj.df.index
    inj.df.loc[idx[rows[:half]], "premium_user"] = inj.df.loc[idx[rows[:half]], "premium_user"].map(
        lambda b: "true" if b else "false"
    )
    inj.df.loc[idx[rows[half:]], "favourite_genres"] = inj.df.loc[
        idx[rows[half:]], "favourite_genres"
    ].map(", ".join)
    inj.add_extra_keys(_count(rates.get("extra_field", 0), len(users)), EXTRA_KEYS["users"])
    text = inj.render(
        _count(rates["malformed_line"], len(users)), _count(rates["duplicate_line"], len(users))
    )
    return text, inj.counts


def dirty_artists(artists: pd.DataFrame, rates: dict, rng) -> tuple[str, dict]:
    inj = _Injector(artists, rng)
    _entity_defects(inj, "id", rates)
    rows = inj.take("repaired", "type_coerced", _count(rates["type_coerced"], len(artists)))
    idx = inj.df.index[rows]
    inj.df["genres"] = inj.df["genres"].astype(object)
    inj.df.loc[idx, "genres"] = inj.df.loc[idx, "genres"].map(";".join)
    inj.add_extra_keys(_count(rates.get("extra_field", 0), len(artists)), EXTRA_KEYS["artists"])
    text = inj.render(
        _count(rates["malformed_line"], len(artists)), _count(rates["duplicate_line"], len(artists))
    )
    return text, inj.counts


def dirty_tracks(tracks: pd.DataFrame, rates: dict, rng) -> tuple[str, dict]:
    n = len(tracks)
    inj = _Injector(tracks, rng)
    _entity_defects(inj, "id", rates)
    df = inj.df
    for col in [
        "popularity",
        "duration_ms",
        "key",
        "explicit",
        "loudness",
        "tempo",
        "danceability",
        "energy",
        "valence",
        "release_date",
        "id_artist",
    ]:
        df[col] = df[col].astype(object)
    rows = inj.take("repaired", "out_of_range", _count(rates["out_of_range"], n))
    fields = list(OUT_OF_RANGE_VALUES)
    for r, f in zip(rows, rng.integers(0, len(fields), len(rows)), strict=True):
        options = OUT_OF_RANGE_VALUES[fields[f]]
        df.iat[r, df.columns.get_loc(fields[f])] = options[int(rng.integers(len(options)))]
    rows = inj.take("repaired", "type_coerced", _count(rates["type_coerced"], n))
    df.iloc[rows, df.columns.get_loc("popularity")] = df["popularity"].iloc[rows].astype(str)
    rows = inj.take("repaired", "invalid_release_date", _count(rates["invalid_value"], n))
    df.iloc[rows, df.columns.get_loc("release_date")] = rng.choice(
        ["unknown", "2024-13-45", "2024-13", "20x4", ""], len(rows)
    )
    # "YYYY-MM" is a valid release date (design.md §1): kept as is, not counted.
    full_dates = np.flatnonzero(df["release_date"].str.len().to_numpy() == 10)
    rows = inj.reserve(_count(rates["format_variant"], n), pool=full_dates)
    df.iloc[rows, df.columns.get_loc("release_date")] = df["release_date"].iloc[rows].str[:7]
    rows = inj.take("repaired", "unknown_artist_id", _count(rates["unknown_id"], n))
    df.iloc[rows, df.columns.get_loc("id_artist")] = base62_ids(rng, len(rows))
    inj.add_extra_keys(_count(rates.get("extra_field", 0), n), EXTRA_KEYS["tracks"])
    text = inj.render(_count(rates["malformed_line"], n), _count(rates["duplicate_line"], n))
    return text, inj.counts


def _iso(ns: np.ndarray) -> pd.Series:
    return pd.Series(iso_ms_strings(ns).to_numpy(zero_copy_only=False), dtype=object)


def _timestamp_variants(ns: np.ndarray, rng) -> np.ndarray:
    """The same instants in other valid ISO-8601 forms than the canonical naive milliseconds."""
    canonical = _iso(ns)
    forms = [
        canonical.str.replace("T", " "),  # space separator
        canonical + "Z",  # UTC designator
        canonical.str[:19],  # no fractional seconds
        canonical + "123",  # microseconds
        _iso(ns + 2 * _HOUR_NS) + "+02:00",  # an offset, the same instant
        _iso(ns - 5 * _HOUR_NS).str[:19] + "-05:00",
    ]
    variant = rng.integers(0, len(forms), len(ns))
    return np.select(
        [variant == i for i in range(len(forms))], [f.to_numpy() for f in forms], default=""
    )


def _respell_event_types(df: pd.DataFrame, rows: np.ndarray, rng) -> None:
    """Other spellings of the event types of ``rows``, as the service's exports write them."""
    col = df.columns.get_loc("event_type")
    types = df["event_type"].iloc[rows].to_numpy()
    for canonical, variants in EVENT_TYPE_VARIANTS.items():  # per type, not per row
        of_type = rows[types == canonical]
        df.iloc[of_type, col] = rng.choice(variants, len(of_type))


def _one_event_per_shared_session(df: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
    """Of ``candidates`` (row positions, in order), the first of each session with another
    event: nulling its user leaves the session naming that user once or more."""
    sizes = df.groupby("session_id")["session_id"].transform("size").to_numpy()
    shared = candidates[sizes[candidates] >= 2]
    return shared[~pd.Series(df["session_id"].to_numpy()[shared]).duplicated().to_numpy()]


def dirty_sessions(
    events: pd.DataFrame, known_users: np.ndarray, rates: dict, rng
) -> tuple[str, dict]:
    """The events as a sessions.jsonl with every kind of ``rates``: the valid forms real
    exports use, repairable defects and junk copies; (text, what was injected)."""
    n = len(events)
    df, ns = _sessions_as_text(events)
    inj = _Injector(df, rng, to_lines=event_lines)
    df = inj.df
    df["timestamp"] = df["timestamp"].astype(object)
    df["event_type"] = df["event_type"].astype(object)
    on_track = np.flatnonzero(df["event_type"].isin(["play", "skip", "like"]).to_numpy())
    ads = np.flatnonzero((df["event_type"] == "advertisement").to_numpy())
    _session_variants(inj, df, ns, ads, rates, rng)

    # A null user id that another event of its session names: repaired.
    rows = inj.take(
        "repaired",
        "user_id_from_session",
        _count(rates.get("recoverable_null_id", 0), n),
        pool=_one_event_per_shared_session(df, inj.free),
    )
    df.iloc[rows, df.columns.get_loc("user_id")] = pd.NA
    _session_junk(inj, df, n, on_track, known_users, rates, rng)
    text = inj.render(_count(rates["malformed_line"], n), _count(rates["duplicate_line"], n))
    return text, inj.counts


def _sessions_as_text(events: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The events with text fields as the export writes them; (frame, timestamps in ns)."""
    df = events.copy()
    ns = df["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    ns = ns.to_numpy().view(np.int64)
    df["timestamp"] = pd.Series(pd.array(iso_ms_strings(ns), dtype="str"), index=df.index)
    df["user_id"] = df["user_id"].astype("Int64")
    for col in ["track_id", "event_type"]:  # categorical -> text, decoded by Arrow
        df[col] = pd.Series(
            pd.array(pc.cast(pa.array(df[col]), pa.large_string()), dtype="str"), index=df.index
        )
    return df, ns


def _session_variants(
    inj: _Injector, df: pd.DataFrame, ns: np.ndarray, ads: np.ndarray, rates: dict, rng
) -> None:
    """Valid variants, normalised by cleaning: timestamp forms, event-type spellings, extra
    keys."""
    n = len(ns)
    rows = inj.take("normalised", "timestamp_form", _count(rates["format_variant"], n) * 10)
    df.iloc[rows, df.columns.get_loc("timestamp")] = _timestamp_variants(ns[rows], rng)
    k_spelling = _count(rates["format_variant"], n)
    rows = np.concatenate(
        [
            inj.take("normalised", "event_type_spelling", (k_spelling + 1) // 2, pool=ads),
            inj.take("normalised", "event_type_spelling", k_spelling // 2),
        ]
    )
    _respell_event_types(df, rows, rng)
    inj.add_extra_keys(_count(rates.get("extra_field", 0), n), EXTRA_KEYS["sessions"])


def _session_junk(
    inj: _Injector,
    df: pd.DataFrame,
    n: int,
    on_track: np.ndarray,
    known_users: np.ndarray,
    rates: dict,
    rng,
) -> None:
    """Junk copies of ``n`` events, dropped by cleaning. A null user alone in its session
    cannot be recovered."""
    k_null, k_unknown = _count(rates["null_id"], n), _count(rates["unknown_id"], n)
    first_new_session = int(df["session_id"].max()) + 1

    def orphan(c):
        c["user_id"] = pd.NA
        c["session_id"] = np.arange(first_new_session, first_new_session + len(c))

    inj.add_copies("null_user_id", k_null, orphan)
    inj.add_copies(
        "null_track_id", k_null, lambda c: c.__setitem__("track_id", None), sources=on_track
    )
    max_user = int(known_users.max())
    inj.add_copies(
        "unknown_user_id",
        k_unknown,
        lambda c: c.__setitem__("user_id", rng.integers(max_user + 1, max_user + 10_000, len(c))),
    )
    inj.add_copies(
        "unknown_track_id",
        k_unknown,
        lambda c: c.__setitem__("track_id", base62_ids(rng, len(c))),
        sources=on_track,
    )
    k_invalid = _count(rates["invalid_value"], n)
    inj.add_copies(
        "unknown_event_type",
        k_invalid,
        lambda c: c.__setitem__("event_type", rng.choice(["pause", "seek", "share", ""], len(c))),
    )
    inj.add_copies(
        "invalid_timestamp",
        k_invalid,
        lambda c: c.__setitem__(
            "timestamp", rng.choice(["yesterday", "2024-02-30T25:61:00", ""], len(c))
        ),
    )
