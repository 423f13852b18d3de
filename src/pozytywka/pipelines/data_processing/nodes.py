"""Nodes of data_processing: parse, validate and clean the raw exports, report what was done.

Each cleaning node returns the typed table, its quality record and the rejected records (raw
line, line number, reason), so nothing read is ever lost without a trace. The quality record keeps
apart what was *dropped* (unusable, removed), *repaired* (a defect fixed or flagged in place, the
record kept) and *normalised* (a valid variant of the contract written in canonical form: not a
defect), per kind (schemas.QUALITY_KINDS) with its count and example line numbers. A dropped row
gets the first reason that applies to it, in the order the node checks them.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter, defaultdict

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from pozytywka.contract import (
    BASE62_ID,
    CONTRACT_FIELDS,
    EVENT_TYPE_SPELLINGS,
    EVENT_TYPES,
    INTEGER_FIELDS,
    REQUIRED_FIELDS,
    TEXT_FIELDS,
    TRACK_EVENTS,
    TRACK_RANGES,
)
from pozytywka.tracking import mlflow_metrics

from .schemas import ARTISTS, CATEGORIES, EVENTS, QUALITY_KINDS, TRACKS, USERS

logger = logging.getLogger(__name__)

# The form timestamps are counted against: naive (UTC) with milliseconds. Others are normalised.
CANONICAL_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$"
EXAMPLE_LINES = 5  # example line numbers per kind in the report
ROW_COUNTS = ("rows_read", "rows_kept", "rows_dropped", "rows_repaired", "rows_normalised")
_CHUNK_LINES = 1 << 20  # lines per Arrow read: a chunk Arrow cannot read goes line by line
_KEY_SEP = "\x1f"  # joins the extra keys of a record
UNDECODABLE = "\ufffd"  # what bytes that are not UTF-8 are read as (datasets.GeneratedTextDataset)


class RawSchemaError(ValueError):
    """A raw file lacks a field of the data contract entirely: it is not that export."""


def _loads(line: str):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _bool(mask) -> np.ndarray:
    """A boolean mask as a (writable) numpy array, missing values as False."""
    if isinstance(mask, pd.Series):
        mask = mask.fillna(False)
    return np.array(mask, dtype=bool)


def _split_lines(text: str) -> pa.Array:
    lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
    return pc.utf8_rtrim(lines, "\r") if "\r" in text else lines  # (a copy only if needed)


def _trimmed(lines: pa.Array) -> pa.Array:
    """The lines without surrounding whitespace; the same array, not a copy, when no line
    has any (a 10M-event export is gigabytes of text)."""
    if len(lines) == 0:
        return lines
    first, last = pc.utf8_slice_codeunits(lines, 0, 1), pc.utf8_slice_codeunits(lines, -1)
    padded = pc.or_(pc.utf8_is_space(first), pc.utf8_is_space(last))
    return pc.utf8_trim_whitespace(lines) if pc.any(padded).as_py() else lines


def _arrow_records(lines: pa.Array, file: str) -> pd.DataFrame | None:
    """Fast path: Arrow's multithreaded reader over lines that look like objects.

    Returns None when Arrow cannot read them one row per line with consistent types (a
    malformed line that still starts with '{' and ends with '}', a number given as text, a key
    whose type changes...); the caller then parses these lines one by one.
    """
    if len(lines) == 0:
        return None
    # Arrow reads NaN/Infinity, which JSON (and the line-by-line parser) rejects.
    if pc.any(pc.match_substring_regex(lines, r"[:\[,]\s*-?(NaN|Infinity)\b")).as_py():
        return None
    body = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array([0, len(lines)], pa.int64()), lines),
        pa.scalar("\n", pa.large_string()),
    )
    text_fields = TEXT_FIELDS[file]
    options = pa_json.ParseOptions(
        unexpected_field_behavior="infer",
        explicit_schema=pa.schema([pa.field(f, pa.large_string()) for f in text_fields]),
    )
    try:
        table = pa_json.read_json(io.BytesIO(body[0].as_buffer()), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(lines):
        return None
    # Text fields absent from the lines come back as all-null columns: drop those (one whose
    # key occurs is kept, so a field that is present but always null stays).
    present = [
        c
        for c in table.column_names
        if c not in text_fields
        or pc.any(pc.is_valid(table[c])).as_py()
        or pc.any(pc.match_substring(lines, f'"{c}"')).as_py()
    ]
    return table.select(present).to_pandas()


def _python_records(lines: pa.Array) -> tuple[pd.DataFrame, np.ndarray]:
    """Slow path, line by line: (records of the lines that are JSON objects, which those are)."""
    records = list(map(_loads, lines.to_pylist()))
    ok = np.fromiter((isinstance(r, dict) for r in records), dtype=bool, count=len(records))
    return pd.DataFrame.from_records([r for r, good in zip(records, ok, strict=True) if good]), ok


def _read_objects(
    lines: pa.Array, candidate: np.ndarray, file: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Records of the ``candidate`` lines (those that look like JSON objects), chunk by chunk,
    so one odd line sends only its own chunk down the slow path and no copy of all candidates
    is made; (frame, mask over ``lines`` of those that parsed)."""
    frames, parsed = [], np.zeros(len(lines), dtype=bool)
    for start in range(0, len(lines), _CHUNK_LINES):
        mask = candidate[start : start + _CHUNK_LINES]
        chunk = lines.slice(start, _CHUNK_LINES)
        chunk = chunk if mask.all() else chunk.filter(pa.array(mask))  # no copy if all are
        df = _arrow_records(chunk, file)
        ok = np.ones(len(chunk), dtype=bool)
        if df is None:
            df, ok = _python_records(chunk)
        frames.append(df)
        parsed[start + np.flatnonzero(mask)[ok]] = True
    if not frames:
        return pd.DataFrame(), parsed
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return df, parsed


def _re2_escape(text: str) -> str:
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


def _extra_keys(df: pd.DataFrame, lines: pa.Array, parsed: np.ndarray, file: str) -> pd.Series:
    """Per record, the keys it carries beyond the contract ("" for none), joined by _KEY_SEP.

    A key given as null counts too: the reader cannot tell it from an absent one, the line can
    (``lines[parsed]`` are the records' lines; searched only for such a key).
    """
    parts = []
    for key in sorted(c for c in df.columns if c not in CONTRACT_FIELDS[file]):
        present = _bool(df[key].notna())
        if not present.all():
            try:
                in_line = pc.match_substring_regex(
                    lines, r'(^|[^\\])"' + _re2_escape(key) + r'"\s*:'
                )
                present |= in_line.to_numpy(zero_copy_only=False)[parsed]
            except pa.ArrowInvalid:  # a key no regex can spell: its non-null values still count
                pass
        parts.append(pc.if_else(pa.array(present), key + _KEY_SEP, ""))
    if not parts:
        return pd.Series("", index=df.index, dtype=object)
    joined = pc.utf8_rtrim(pc.binary_join_element_wise(*parts, ""), characters=_KEY_SEP)
    return pd.Series(joined.to_numpy(zero_copy_only=False), index=df.index, dtype=object)


def _selected_lines(lines: pa.Array, keep: np.ndarray) -> pd.Series:
    """``lines[keep]`` as text, without copying them: slices of ``lines`` between the lines
    left out (a copy of every line of a 10M-event export would be 1.3 GB more at the peak)."""
    edges = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = [lines.slice(lo, hi - lo) for lo, hi in zip(starts, ends, strict=True)]
    return pa.chunked_array(runs, type=lines.type).to_pandas()


def parse_jsonl(text: str, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse JSON Lines text into a frame of the contract's fields (absent ones null), with
    ``_line`` (1-based line number), ``_raw`` (the text) and ``_extra_keys`` (other keys of the
    record, which are otherwise ignored).

    Lines that are not a JSON object are returned as rejects with reason ``malformed_line``;
    blank lines are skipped. A file lacking a contract field altogether raises RawSchemaError.
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the first record
    lines = _split_lines(text)
    if len(lines) and len(text) and text.endswith("\n"):
        lines = lines.slice(0, len(lines) - 1)  # the terminating newline ends, not adds, a line
    numbers = np.arange(1, len(lines) + 1)
    stripped = _trimmed(lines)
    blank = pc.equal(pc.utf8_length(stripped), 0).to_numpy(zero_copy_only=False)
    looks_like_object = pc.starts_with(stripped, "{").to_numpy(zero_copy_only=False) & pc.ends_with(
        stripped, "}"
    ).to_numpy(zero_copy_only=False)
    df, ok = _read_objects(stripped, looks_like_object, file)
    extra = _extra_keys(df, stripped, ok, file)
    missing = [c for c in REQUIRED_FIELDS[file] if c not in df.columns]
    if len(df) and missing:
        raise RawSchemaError(
            f"{file}.jsonl has no field {missing}: not a {file} export "
            f"(contract in docs/design.md §1)"
        )
    df = pd.DataFrame(
        {
            c: df[c] if c in df.columns else pd.Series(None, index=df.index, dtype=object)
            for c in CONTRACT_FIELDS[file]
        },
        index=df.index,
    )
    df["_line"] = numbers[ok]
    df["_raw"] = _selected_lines(lines, ok)
    df["_extra_keys"] = extra
    bad = ~blank & ~ok
    rejects = pd.DataFrame(
        {
            "file": file,
            "line": numbers[bad],
            "reason": "malformed_line",
            "raw": lines.filter(pa.array(bad)).to_pandas(),
        }
    )
    return df, rejects


class _Quality:
    """What a cleaning node did to the records of one file: per category and kind, the line
    numbers of the records (hence counts and examples) and optional detail counts."""

    def __init__(self, file: str, rows_read: int):
        self.file, self.rows_read = file, rows_read
        self._lines: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
        self._detail: dict[tuple[str, str], Counter] = defaultdict(Counter)

    def note(
        self, category: str, kind: str, rows: pd.DataFrame, mask, detail: str | dict | None = None
    ) -> None:
        """Count ``kind`` on the kept ``rows`` where ``mask`` holds; ``detail`` is a field name
        (counted once per row) or ``{key: count}`` (values seen, keys found...)."""
        lines = rows["_line"].to_numpy()[_bool(mask)]
        self._lines[(category, kind)].append(lines)
        if isinstance(detail, str):
            detail = {detail: len(lines)}
        self.add_detail(category, kind, detail or {})

    def add_detail(self, category: str, kind: str, counts: dict) -> None:
        self._detail[(category, kind)].update({str(k): int(n) for k, n in counts.items() if n})

    def _entry(self, category: str, kind: str) -> dict:
        lines = np.concatenate([np.zeros(0, np.int64), *self._lines.get((category, kind), [])])
        entry = {
            "count": len(lines),
            "example_lines": [int(n) for n in np.unique(lines)[:EXAMPLE_LINES]],
        }
        if detail := self._detail.get((category, kind)):
            entry["detail"] = dict(sorted(detail.items(), key=lambda kv: (-kv[1], kv[0])))
        return entry

    def _rows(self, category: str) -> int:
        lines = [a for (cat, _), arrays in self._lines.items() if cat == category for a in arrays]
        return len(np.unique(np.concatenate(lines))) if lines else 0

    def report(self, rows_kept: int, rejected: pd.DataFrame) -> dict:
        """Row counts and every kind of QUALITY_KINDS (zeros included), each with its count,
        first example lines and detail; dropped kinds come from the rejected records."""
        for reason, lines in rejected.groupby("reason")["line"]:
            self._lines[("dropped", str(reason))].append(lines.to_numpy())
        unlisted = sorted(
            f"{cat}.{kind}"
            for cat, kind in [*self._lines, *self._detail]
            if kind not in QUALITY_KINDS[self.file][cat]
        )
        if unlisted:
            raise ValueError(f"{self.file}: kinds missing from schemas.QUALITY_KINDS: {unlisted}")
        if self.rows_read != rows_kept + len(rejected):
            raise ValueError(
                f"{self.file}: {self.rows_read} rows read but {rows_kept} kept and "
                f"{len(rejected)} dropped"
            )
        counts = {
            "rows_read": self.rows_read,
            "rows_kept": rows_kept,
            "rows_dropped": len(rejected),
            "rows_repaired": self._rows("repaired"),
            "rows_normalised": self._rows("normalised"),
        }
        return {
            **counts,
            **{
                cat: {kind: self._entry(cat, kind) for kind in QUALITY_KINDS[self.file][cat]}
                for cat in CATEGORIES
            },
        }


def _note_raw_text(quality: _Quality, rows: pd.DataFrame, kept=None) -> None:
    """What a kept record's raw line shows: keys outside the contract (ignored, counted under
    normalised with the key names) and bytes that were not UTF-8 (read as U+FFFD, repaired)."""
    kept_mask = np.ones(len(rows), dtype=bool) if kept is None else _bool(kept)
    has = _bool(rows["_extra_keys"] != "") & kept_mask
    detail: Counter[str] = Counter()
    for combo, n in rows["_extra_keys"][has].value_counts().items():  # per distinct key set
        detail.update({key: int(n) for key in combo.split(_KEY_SEP)})
    quality.note("normalised", "extra_field", rows, has, detail)
    undecodable = _bool(rows["_raw"].str.contains(UNDECODABLE, regex=False)) & kept_mask
    quality.note("repaired", "invalid_utf8", rows, undecodable)


def _rejected(df: pd.DataFrame, reasons: pd.Series, file: str) -> pd.DataFrame:
    """The rows of ``df`` with a reason (None = keep), with their line number and raw line."""
    bad = reasons.notna().to_numpy()
    return pd.DataFrame(  # the few rejected rows taken before any conversion
        {
            "file": file,
            "line": df["_line"].to_numpy()[bad],
            "reason": reasons[bad].to_numpy(),
            "raw": df["_raw"][bad].to_numpy(),
        }
    )


def _reject(df: pd.DataFrame, reasons: pd.Series, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` by ``reasons`` (None = keep) into kept rows and rejected records."""
    return df.loc[reasons.isna().to_numpy()], _rejected(df, reasons, file)


def _first_reason(checks: list[tuple[str, pd.Series]], index) -> pd.Series:
    """Per row, the name of the first failing check (checks are boolean 'is bad' masks)."""
    reason = pd.Series(None, index=index, dtype=object)
    for name, mask in reversed(checks):
        reason = reason.mask(_bool(mask), name)
    return reason


def _is_str(s: pd.Series) -> pd.Series:
    if not pd.api.types.is_object_dtype(s) and not pd.api.types.is_string_dtype(s):
        return pd.Series(False, index=s.index)
    return s.map(lambda v: isinstance(v, str))


def _int_ids(s: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Integer ids: (values, invalid: present but not a whole number, given as text).

    JSON numbers like ``7.0`` are the id 7; the text ``"7"`` is repaired and counted; booleans
    and fractional numbers are invalid.
    """
    is_bool = pd.Series(False, index=s.index)
    is_text = pd.Series(False, index=s.index)
    if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
        is_bool = s.map(lambda v: isinstance(v, bool)).astype(bool)
        is_text = _is_str(s).astype(bool)
    num = pd.to_numeric(s.mask(is_bool), errors="coerce").astype("float64")
    whole = num.where(np.isfinite(num) & (num == np.round(num)))
    invalid = s.notna() & whole.isna()
    return whole.astype("Int64"), invalid, is_text & whole.notna()


def _drop_duplicates(df: pd.DataFrame, key: str, file: str, rejects: list) -> pd.DataFrame:
    """Exact duplicate lines, then other records reusing an id: the first record wins."""
    dup_line = df["_raw"].duplicated()
    conflict = ~dup_line & df[key].duplicated()
    reasons = _first_reason(
        [("duplicate_line", dup_line), ("conflicting_duplicate_id", conflict)], df.index
    )
    df, rej = _reject(df, reasons, file)
    rejects.append(rej)
    return df


def _genre_list(value) -> tuple[list[str], str]:
    """(lower-case genres, how they came): a JSON list (``list``; an array when Arrow read it),
    a 'a, b' / 'a;b' string (``coerced``) or nothing usable (``missing``)."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(g).strip().lower() for g in value if g is not None and str(g).strip()], "list"
    if isinstance(value, str):
        return [g.strip().lower() for g in re.split(r"[,;]", value) if g.strip()], "coerced"
    return [], "missing"


def _as_list(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Genre lists from lists or strings; (values, how each came: list, coerced or missing)."""
    converted = s.map(_genre_list)
    return converted.str[0], converted.str[1]


_TRUTHY_TEXT = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def _as_bool(value) -> bool | None:
    """True/False from a bool, 0/1 or a yes/no-like string; None when it is none of those."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return _TRUTHY_TEXT.get(value.strip().lower())
    return None


def _text(s: pd.Series | None, index) -> pd.Series:
    if s is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    return s.astype("string")


def with_incoming(export: str, incoming: dict) -> str:
    """The raw export followed by every file the serving API recorded (in name order, i.e. by
    day), so new events and users go through the same validation and defect counting. Line
    numbers in the rejects count on from the end of the main export. With nothing incoming,
    the export itself (no copy: at 10M events it is gigabytes)."""
    added = []
    for name in sorted(incoming):
        text = incoming[name]().strip("\n")
        if text:
            added.append(text)
            logger.info("Incoming %s: %d lines", name, text.count("\n") + 1)
    if not added:
        return export
    parts = [export.rstrip("\n")] if export.strip() else []
    return "\n".join(parts + added) + "\n"


def clean_users(text: str) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Users: integer ids, favourite genres as lists, premium as bool."""
    df, malformed = parse_jsonl(text, "users")
    quality = _Quality("users", rows_read=len(df) + len(malformed))
    rejects = [malformed]
    user_id, invalid_id, id_as_text = _int_ids(df["user_id"])
    reasons = _first_reason(
        [("null_id", df["user_id"].isna()), ("invalid_id", invalid_id)], df.index
    )
    df, rej = _reject(df.assign(user_id=user_id, _id_as_text=id_as_text), reasons, "users")
    rejects.append(rej)
    df = _drop_duplicates(df, "user_id", "users", rejects)
    genres, genres_came = _as_list(df["favourite_genres"])
    premium = df["premium_user"].map(_as_bool)
    premium_is_bool = df["premium_user"].map(lambda v: isinstance(v, bool))
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype("int64"),
            "name": _text(df["name"], df.index),
            "city": _text(df["city"], df.index),
            "street": _text(df["street"], df.index),
            "favourite_genres": genres,
            "premium_user": premium.fillna(False).astype(bool),
        }
    ).reset_index(drop=True)
    quality.note("repaired", "type_coerced", df, df["_id_as_text"], "user_id")
    quality.note("repaired", "type_coerced", df, genres_came == "coerced", "favourite_genres")
    quality.note(
        "repaired",
        "type_coerced",
        df,
        ~_bool(premium_is_bool) & _bool(premium.notna()),
        "premium_user",
    )
    quality.note("repaired", "missing_favourite_genres", df, genres_came == "missing")
    quality.note("repaired", "invalid_premium_flag", df, premium.isna())
    _note_raw_text(quality, df)
    rejected = pd.concat(rejects, ignore_index=True)
    return USERS.validate(out), quality.report(len(out), rejected), rejected


def _base62_ids(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Ids of artists or tracks and why each is unusable (None when it is fine)."""
    ids = _text(df["id"], df.index)
    reasons = _first_reason(
        [("null_id", ids.isna()), ("invalid_id", ~_bool(ids.str.match(BASE62_ID)))], df.index
    )
    return ids, reasons


def _base62_records(text: str, file: str) -> tuple[pd.DataFrame, _Quality, list]:
    """Records of an export keyed by a base62 ``id`` (artists, tracks): unusable ids and
    duplicates dropped; (records, their quality notes, the rejected records so far)."""
    df, malformed = parse_jsonl(text, file)
    quality = _Quality(file, rows_read=len(df) + len(malformed))
    ids, reasons = _base62_ids(df)
    df, rejected = _reject(df.assign(id=ids), reasons, file)
    rejects = [malformed, rejected]
    return _drop_duplicates(df, "id", file, rejects), quality, rejects


def clean_artists(text: str) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Artists: base62 ids (others dropped), genres as lists of lower-case strings."""
    df, quality, rejects = _base62_records(text, "artists")
    genres, genres_came = _as_list(df["genres"])
    out = pd.DataFrame(
        {
            "artist_id": df["id"].astype("string"),
            "name": _text(df["name"], df.index),
            "genres": genres,
        }
    ).reset_index(drop=True)
    quality.note("repaired", "type_coerced", df, genres_came == "coerced", "genres")
    quality.note("repaired", "missing_genres", df, genres_came == "missing")
    _note_raw_text(quality, df)
    rejected = pd.concat(rejects, ignore_index=True)
    return ARTISTS.validate(out), quality.report(len(out), rejected), rejected


# Release-date forms of the contract and how to read each.
_RELEASE_FORMS = {r"\d{4}": "%Y", r"\d{4}-\d{2}": "%Y-%m", r"\d{4}-\d{2}-\d{2}": "%Y-%m-%d"}


def _release(s: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Release dates 'YYYY', 'YYYY-MM' or 'YYYY-MM-DD', kept as given (trimmed): (text, year,
    invalid: present but none of those forms, or not a real date)."""
    text = _text(s, s.index).str.strip()
    year = pd.Series(np.nan, index=s.index)
    for pattern, fmt in _RELEASE_FORMS.items():
        of_form = text.where(_bool(text.str.fullmatch(pattern)))
        year = year.fillna(pd.to_datetime(of_form, format=fmt, errors="coerce").dt.year)
    year = year.where(year.between(1000, 2100)).astype("Int64")
    valid = year.notna()
    return text.where(valid), year, text.notna() & ~valid


def _track_numbers(df: pd.DataFrame, quality: _Quality) -> dict[str, pd.Series]:
    """Numeric track fields: text coerced, wrong types and out-of-range values set to null;
    each counted per field."""
    numeric = {}
    for col, (lo, hi) in TRACK_RANGES.items():
        raw = (
            df[col].map(lambda v: int(v) if isinstance(v, bool) else v)
            if col == "explicit"
            else df[col]
        )
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad_type = raw.notna() & values.isna()
        out_of_range = values.notna() & ~values.between(lo, hi)
        if col in INTEGER_FIELDS:
            out_of_range |= values.notna() & (values != np.round(values))
        quality.note("repaired", "type_coerced", df, _is_str(raw) & values.notna(), col)
        quality.note("repaired", "out_of_range", df, out_of_range, col)
        quality.note("repaired", "invalid_value", df, bad_type, col)
        quality.note("repaired", "missing_value", df, raw.isna(), col)
        values = values.mask(out_of_range | bad_type)
        numeric[col] = values.astype("Int64") if col in INTEGER_FIELDS else values
    return numeric


def clean_tracks(text: str, artists: pd.DataFrame) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Tracks: numeric fields coerced and range-checked (out of range -> null, counted); a track
    of an unknown artist is kept with its artist unknown."""
    df, quality, rejects = _base62_records(text, "tracks")
    numeric = _track_numbers(df, quality)
    release_date, release_year, bad_date = _release(df["release_date"])
    artist_id = _text(df["id_artist"], df.index)
    unknown_artist = artist_id.notna() & ~_bool(artist_id.isin(artists["artist_id"]))
    quality.note("repaired", "invalid_release_date", df, bad_date)
    quality.note("repaired", "unknown_artist_id", df, unknown_artist)
    quality.note("repaired", "null_artist_id", df, artist_id.isna())
    _note_raw_text(quality, df)
    out = pd.DataFrame(
        {
            "track_id": df["id"].astype("string"),
            "name": _text(df["name"], df.index),
            "artist_id": artist_id.mask(unknown_artist),
            "release_date": release_date.astype("string"),
            "release_year": release_year,
            **{c: v for c, v in numeric.items() if c != "explicit"},
            "explicit": numeric["explicit"].astype("boolean"),
        }
    ).reset_index(drop=True)
    rejected = pd.concat(rejects, ignore_index=True)
    return TRACKS.validate(out), quality.report(len(out), rejected), rejected


def _canonical_event_types(raw: pd.Series) -> pd.Series:
    """Known spellings (trimmed, any case) as their canonical type; unknown ones as NA."""
    return raw.str.strip().str.lower().map(EVENT_TYPE_SPELLINGS).astype("string")


def _users_from_sessions(
    session_id: pd.Series, user_id: pd.Series, known_user: np.ndarray, null_user: np.ndarray
) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Null user ids taken from the other events of their session when these name exactly one
    known user: (user ids, recovered, ambiguous: the session names several users)."""
    donors = pd.DataFrame({"session_id": session_id, "user_id": user_id})[
        known_user & _bool(session_id.notna())
    ]
    per_session = donors.groupby("session_id")["user_id"].agg(["nunique", "first"])
    n_users = session_id.map(per_session["nunique"]).where(null_user)
    recovered, ambiguous = _bool(n_users == 1), _bool(n_users > 1)
    found = session_id.map(per_session["first"]).astype("Int64")
    return user_id.mask(recovered, found), recovered, ambiguous


def _timestamp_forms(ts_text: pd.Series) -> dict[str, int]:
    """How many timestamps take each form, digits shown as 'd' (``dddd-dd-ddTdd:dd:ddZ``)."""
    return ts_text.str.replace(r"\d", "d", regex=True).value_counts().to_dict()


def _session_user_conflicts(events: pd.DataFrame) -> pd.Series:
    """Events naming another user than the first event of their session (sorted events)."""
    return events["user_id"] != events.groupby("session_id")["user_id"].transform("first")


def _read_events(df: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """Every parsed event line typed and normalised (canonical event type, UTC timestamp, user
    recovered from the session), with the raw text and the flags the checks need."""
    raw_type = _text(df["event_type"], df.index)
    event_type = _canonical_event_types(raw_type)
    session_id, invalid_session, session_as_text = _int_ids(df["session_id"])
    user_id, invalid_user, user_as_text = _int_ids(df["user_id"])
    null_user = _bool(df["user_id"].isna())
    user_id, recovered, ambiguous = _users_from_sessions(
        session_id, user_id, _bool(user_id.isin(users["user_id"])), null_user
    )
    track_id = _text(df["track_id"], df.index)
    ts_text = _text(df["timestamp"], df.index)
    return pd.DataFrame(
        {
            "session_id": session_id,
            "user_id": user_id,
            "track_id": track_id,
            "event_type": event_type,
            "timestamp": pd.to_datetime(ts_text, format="ISO8601", utc=True, errors="coerce"),
            "raw_type": raw_type,
            "ts_text": ts_text,
            "is_track_event": _bool(event_type.isin(TRACK_EVENTS)),
            "invalid_session": invalid_session,
            "invalid_user": invalid_user,
            "session_as_text": session_as_text,
            "user_as_text": user_as_text,
            "null_user": null_user,
            "recovered": recovered,
            "ambiguous": ambiguous,
        },
        index=df.index,
    )


def _event_drop_reasons(
    df: pd.DataFrame, ev: pd.DataFrame, users: pd.DataFrame, tracks: pd.DataFrame
) -> pd.Series:
    """Why each event line is dropped (None: kept), the first check that fails, then
    ``duplicate_line`` for the same event again once normalised."""
    track_event = ev["is_track_event"]
    reasons = _first_reason(
        [
            ("null_session_id", df["session_id"].isna()),
            ("invalid_session_id", ev["invalid_session"]),
            ("null_user_id_ambiguous", ev["ambiguous"]),
            ("null_user_id", ev["null_user"] & ~ev["recovered"]),
            ("invalid_user_id", ev["invalid_user"]),
            ("null_event_type", ev["raw_type"].isna()),
            ("unknown_event_type", ev["event_type"].isna()),
            ("null_track_id", track_event & ev["track_id"].isna()),
            ("invalid_timestamp", ev["timestamp"].isna()),
            ("unknown_user_id", ~_bool(ev["user_id"].isin(users["user_id"]))),
            ("unknown_track_id", track_event & ~_bool(ev["track_id"].isin(tracks["track_id"]))),
        ],
        df.index,
    )
    # The same event again: first among rows whose ids, time and type repeat, then in full
    # among those only (the same rows as .duplicated() on all five, without hashing the
    # track id of every row).
    event = ev.loc[reasons.isna(), ["session_id", "timestamp", "user_id", "event_type"]]
    event = event[event.duplicated(keep=False).to_numpy()]
    event = event.assign(track_id=ev["track_id"][event.index].where(track_event[event.index]))
    repeated = event.duplicated().reindex(df.index, fill_value=False)
    return reasons.mask(_bool(repeated), "duplicate_line")


def _note_event_changes(
    quality: _Quality, df: pd.DataFrame, ev: pd.DataFrame, kept: np.ndarray
) -> None:
    """Repairs and normalisations of the kept event lines, and the unknown event types seen."""
    quality.note("repaired", "user_id_from_session", df, ev["recovered"] & kept)
    quality.note("repaired", "type_coerced", df, ev["session_as_text"] & kept, "session_id")
    quality.note("repaired", "type_coerced", df, ev["user_as_text"] & kept, "user_id")
    quality.note(
        "repaired",
        "track_on_non_track_event",
        df,
        ~ev["is_track_event"] & _bool(ev["track_id"].notna()) & kept,
    )
    respelled = kept & _bool(ev["raw_type"] != ev["event_type"])
    quality.note(
        "normalised",
        "event_type_spelling",
        df,
        respelled,
        ev["raw_type"][respelled].value_counts().to_dict(),
    )
    reformed = kept & ~_bool(ev["ts_text"].str.match(CANONICAL_TIMESTAMP))
    quality.note(
        "normalised", "timestamp_form", df, reformed, _timestamp_forms(ev["ts_text"][reformed])
    )
    _note_raw_text(quality, df, kept)


def clean_sessions(
    text: str, users: pd.DataFrame, tracks: pd.DataFrame
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Session events: ids, event types and ISO-8601 timestamps validated; duplicates dropped.

    Normalised (kept, not defects): known event-type spellings (``advertisment``, ``PLAY``,
    `` like``), timestamps in other ISO-8601 forms (naive ones are UTC), keys outside the
    contract. Repaired (kept): a null user id its session names unambiguously, a track id on an
    event that carries none, ids given as text; flagged: ``session_user_conflict``, events of a
    session whose first event names another user. Dropped (in the rejects): malformed lines,
    null, invalid or unknown ids (``null_user_id`` when no other event of the session names a
    known user, ``null_user_id_ambiguous`` when several do), unknown event types (with the
    values seen), unparsable timestamps, duplicates (the same event again once normalised).
    """
    df, malformed = parse_jsonl(text, "sessions")
    quality = _Quality("sessions", rows_read=len(df) + len(malformed))
    ev = _read_events(df, users)
    reasons = _event_drop_reasons(df, ev, users, tracks)
    kept = _bool(reasons.isna())
    rejected = pd.concat([malformed, _rejected(df, reasons, "sessions")], ignore_index=True)
    quality.add_detail(
        "dropped",
        "unknown_event_type",
        ev["raw_type"][_bool(reasons == "unknown_event_type")].value_counts().to_dict(),
    )
    _note_event_changes(quality, df, ev, kept)

    # The parsed lines and the checks' columns are no longer needed: free them (gigabytes at
    # 10M events) before the kept events are sorted by session, then time (stable, as
    # sort_values) and taken once.
    line_numbers = df["_line"].to_numpy()
    ev = ev[["session_id", "timestamp", "user_id", "track_id", "event_type", "is_track_event"]]
    del df
    rows = np.flatnonzero(kept)
    rows = rows[
        np.lexsort(
            (
                ev["timestamp"].array.asi8[rows],
                ev["session_id"].iloc[rows].to_numpy(np.int64),
            )
        )
    ]
    track_event = ev["is_track_event"].to_numpy()[rows]
    events = pd.DataFrame(
        {
            "session_id": ev["session_id"].iloc[rows].to_numpy(np.int64),
            "timestamp": ev["timestamp"].iloc[rows].astype("datetime64[ns, UTC]").array,
            "user_id": ev["user_id"].iloc[rows].to_numpy(np.int64),
            "track_id": ev["track_id"].iloc[rows].where(track_event).array,
            "event_type": pd.Categorical(ev["event_type"].iloc[rows], categories=EVENT_TYPES),
        }
    )
    conflicts = _session_user_conflicts(events).to_numpy()
    lines = pd.DataFrame({"_line": line_numbers[rows]})
    quality.note("repaired", "session_user_conflict", lines, conflicts)
    return EVENTS.validate(events), quality.report(len(events), rejected), rejected


def merge_listening_events(
    events: pd.DataFrame, tracks: pd.DataFrame, artists: pd.DataFrame, users: pd.DataFrame
) -> pd.DataFrame:
    """Track events (play/skip/like) with their track, artist and user attributes."""
    track_events = events[events["event_type"].isin(TRACK_EVENTS)]
    track_cols = ["track_id", "artist_id", "popularity", "duration_ms", "explicit", "release_year"]
    merged = (
        track_events.merge(tracks[track_cols], on="track_id", how="left", validate="many_to_one")
        .merge(
            artists.rename(columns={"name": "artist_name"})[["artist_id", "artist_name"]],
            on="artist_id",
            how="left",
            validate="many_to_one",
        )
        .merge(users[["user_id", "premium_user"]], on="user_id", how="left", validate="many_to_one")
    )
    merged["event_type"] = merged["event_type"].cat.remove_unused_categories()
    return merged


_SECTIONS = {
    "dropped": "Unusable records, removed. Each is in `rejected_records.parquet` with its file, "
    "line, reason and raw text.",
    "repaired": "Defects fixed in place (or flagged); the record is kept.",
    "normalised": "Form differences that are not defects: valid variants of the contract "
    "(other spellings, timestamp forms, extra keys), kept in canonical form.",
}
_MD_DETAIL_ITEMS = 10  # detail entries shown per Markdown row (the JSON has them all)


def _md_cell(value) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_detail(detail: dict) -> str:
    def key(k: str) -> str:  # quote what would not show: "", " like"
        return json.dumps(k) if not k or k != k.strip() else k

    items = [f"{key(k)}: {n}" for k, n in list(detail.items())[:_MD_DETAIL_ITEMS]]
    if len(detail) > _MD_DETAIL_ITEMS:
        items.append(f"… {len(detail) - _MD_DETAIL_ITEMS} more")
    return _md_cell(", ".join(items))


def _md_section(report: dict, category: str) -> list[str]:
    rows = [
        f"| {file} | {kind} | {e['count']} | {', '.join(map(str, e['example_lines']))} | "
        f"{_md_detail(e.get('detail', {}))} |"
        for file, kinds in report[category].items()
        for kind, e in kinds.items()
        if e["count"]
    ]
    table = ["| file | kind | count | example lines | detail |", "|---|---|---:|---|---|", *rows]
    return [
        f"## {category.capitalize()}",
        "",
        _SECTIONS[category],
        "",
        *(table if rows else ["None."]),
        "",
    ]


def _markdown(report: dict) -> str:
    lines = [
        "# Data quality",
        "",
        "Per file: read = kept + dropped; repaired and normalised rows are among the kept.",
        "",
        "| file | read | kept | dropped | repaired | normalised |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {file} | " + " | ".join(str(s[k]) for k in ROW_COUNTS) + " |"
        for file, s in report["summary"].items()
    ]
    lines.append("")
    for category in CATEGORIES:
        lines += _md_section(report, category)
    return "\n".join(lines)


def _metrics(report: dict) -> dict:
    """MLflow metrics: ``dq/<file>/<category>/<kind>`` and ``dq/<file>/rows_<...>``."""
    metrics = {
        f"dq/{file}/{category}/{kind}": e["count"]
        for category in CATEGORIES
        for file, kinds in report[category].items()
        for kind, e in kinds.items()
    }
    metrics.update(
        {f"dq/{file}/{k}": n for file, s in report["summary"].items() for k, n in s.items()}
    )
    return mlflow_metrics(metrics)


def report_data_quality(
    users_q: dict,
    artists_q: dict,
    tracks_q: dict,
    sessions_q: dict,
    users_rej: pd.DataFrame,
    artists_rej: pd.DataFrame,
    tracks_rej: pd.DataFrame,
    sessions_rej: pd.DataFrame,
) -> tuple[dict, str, dict, pd.DataFrame]:
    """The data-quality report (JSON and Markdown), its MLflow metrics and all rejected records.

    The JSON: ``summary`` (row counts per file), ``dropped``, ``repaired`` and ``normalised``
    (``{file: {kind: {count, example_lines[, detail]}}}``, every kind checked, zeros too),
    ``unknown_event_types`` (``{value: count}``) and ``defects`` (dropped and repaired counts by
    kind, summed over files; normalised forms are not defects).
    """
    files = {"users": users_q, "artists": artists_q, "tracks": tracks_q, "sessions": sessions_q}
    defects: Counter = Counter()
    for q in files.values():
        for category in ("dropped", "repaired"):
            defects.update({kind: e["count"] for kind, e in q[category].items()})
    report = {
        "summary": {f: {k: q[k] for k in ROW_COUNTS} for f, q in files.items()},
        **{category: {f: q[category] for f, q in files.items()} for category in CATEGORIES},
        "unknown_event_types": sessions_q["dropped"]["unknown_event_type"].get("detail", {}),
        "defects": dict(sorted(defects.items())),
    }
    rejected = pd.concat([users_rej, artists_rej, tracks_rej, sessions_rej], ignore_index=True)
    for f, s in report["summary"].items():
        logger.info("Data quality, %s: %s", f, s)
    return report, _markdown(report), _metrics(report), rejected
