"""Nodes of data_processing: parse, validate and clean the raw exports, report every defect.

Each cleaning node returns the typed table, its defect counts ``{kind: count}`` and the rejected
records (raw line, line number, reason), so nothing read is ever lost without a trace. A row gets
the first defect that applies to it in the order the node checks them; repaired rows are kept.
"""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .schemas import (
    ARTISTS,
    BASE62_ID,
    DEFECT_KINDS,
    DROPPED_KINDS,
    EVENT_TYPES,
    EVENTS,
    INTEGER_FIELDS,
    REQUIRED_FIELDS,
    TRACK_EVENTS,
    TRACK_RANGES,
    TRACKS,
    USERS,
)

logger = logging.getLogger(__name__)

CANONICAL_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}$"


class RawSchemaError(ValueError):
    """A raw file lacks a field of the data contract entirely: it is not that export."""


# Text fields Arrow's JSON reader must not reinterpret (it would turn ISO strings into timestamps).
_TEXT_FIELDS = {"timestamp", "track_id", "event_type", "id", "id_artist", "name", "city",
                "street", "release_date"}


def _loads(line: str):
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def _split_lines(text: str) -> pa.Array:
    lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").flatten()
    return pc.utf8_rtrim(lines, "\r")


def _arrow_records(lines: pa.Array, required: list[str]) -> pd.DataFrame | None:
    """Fast path: Arrow's multithreaded reader over lines that look like objects.

    Returns None when Arrow cannot read them one row per line with consistent types (a
    malformed line that still starts with '{' and ends with '}', a number given as text...);
    the caller then parses line by line.
    """
    if len(lines) == 0:
        return None
    body = pc.binary_join(pa.LargeListArray.from_arrays(pa.array([0, len(lines)], pa.int64()),
                                                        lines), pa.scalar("\n", pa.large_string()))
    options = pa_json.ParseOptions(unexpected_field_behavior="infer", explicit_schema=pa.schema(
        [pa.field(f, pa.large_string()) for f in sorted(_TEXT_FIELDS)]))
    try:
        table = pa_json.read_json(io.BytesIO(body[0].as_buffer()), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(lines):
        return None
    # Text fields absent from the file come back as all-null columns: drop those (a required
    # one is kept if its key occurs, so a field that is present but always null stays).
    present = [c for c in table.column_names
               if c not in _TEXT_FIELDS or pc.any(pc.is_valid(table[c])).as_py()
               or (c in required and pc.any(pc.match_substring(lines, f'"{c}"')).as_py())]
    return table.select(present).to_pandas()


def parse_jsonl(text: str, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse JSON Lines text into a frame (``_line``: 1-based line number, ``_raw``: the text).

    Lines that are not a JSON object are returned as rejects with reason ``malformed_line``;
    blank lines are skipped. A file lacking a contract field altogether raises RawSchemaError.
    """
    text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the first record
    lines = _split_lines(text)
    if len(lines) and len(text) and text.endswith("\n"):
        lines = lines.slice(0, len(lines) - 1)  # the terminating newline ends, not adds, a line
    numbers = np.arange(1, len(lines) + 1)
    stripped = pc.utf8_trim_whitespace(lines)
    blank = pc.equal(pc.utf8_length(stripped), 0).to_numpy(zero_copy_only=False)
    looks_like_object = (pc.starts_with(stripped, "{").to_numpy(zero_copy_only=False)
                         & pc.ends_with(stripped, "}").to_numpy(zero_copy_only=False))
    candidates = stripped.take(pa.array(np.flatnonzero(looks_like_object)))
    # Arrow reads NaN/Infinity, which JSON (and the line-by-line parser) rejects.
    non_json_numbers = len(candidates) and pc.any(pc.match_substring_regex(
        candidates, r"[:\[,]\s*-?(NaN|Infinity)\b")).as_py()
    df = None if non_json_numbers else _arrow_records(candidates, REQUIRED_FIELDS[file])
    if df is not None:
        ok = looks_like_object
    else:
        records = list(map(_loads, lines.to_pylist()))
        ok = np.fromiter((isinstance(r, dict) for r in records), dtype=bool, count=len(records))
        df = pd.DataFrame.from_records([r for r, good in zip(records, ok, strict=True) if good])
    bad = ~blank & ~ok
    missing = [c for c in REQUIRED_FIELDS[file] if c not in df.columns]
    if len(df) and missing:
        raise RawSchemaError(f"{file}.jsonl has no field {missing}: not a {file} export "
                             f"(contract in design.md §1)")
    for c in missing:
        df[c] = pd.Series(dtype=object)
    df["_line"] = numbers[ok]
    df["_raw"] = lines.filter(pa.array(ok)).to_pandas()
    rejects = pd.DataFrame({"file": file, "line": numbers[bad], "reason": "malformed_line",
                            "raw": lines.filter(pa.array(bad)).to_pandas()})
    return df, rejects


def _reject(df: pd.DataFrame, reasons: pd.Series, file: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` by ``reasons`` (None = keep); the rejected rows keep their raw line."""
    bad = reasons.notna().to_numpy()
    rejected = pd.DataFrame({"file": file, "line": df["_line"].to_numpy()[bad],
                             "reason": reasons.to_numpy()[bad], "raw": df["_raw"].to_numpy()[bad]})
    return df.loc[~bad], rejected


def _first_reason(checks: list[tuple[str, pd.Series]], index) -> pd.Series:
    """Per row, the name of the first failing check (checks are boolean 'is bad' masks)."""
    reason = pd.Series(None, index=index, dtype=object)
    for name, mask in reversed(checks):
        reason = reason.mask(mask.to_numpy(), name)
    return reason


def _counts(rejects: pd.DataFrame, repairs: dict[str, int]) -> dict[str, int]:
    counts = rejects["reason"].value_counts().to_dict() if len(rejects) else {}
    counts.update({k: int(v) for k, v in repairs.items() if v})
    return {k: int(v) for k, v in sorted(counts.items())}


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
    reasons = _first_reason([("duplicate_line", dup_line),
                             ("conflicting_duplicate_id", conflict)], df.index)
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


def _as_list(s: pd.Series) -> tuple[pd.Series, int, int]:
    """Genre lists from lists or strings; (values, number coerced, number missing)."""
    converted = s.map(_genre_list)
    how = converted.str[1]
    return converted.str[0], int((how == "coerced").sum()), int((how == "missing").sum())


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
    numbers in the rejects count on from the end of the main export."""
    parts = [export.rstrip("\n")] if export.strip() else []
    for name in sorted(incoming):
        text = incoming[name]().strip("\n")
        if text:
            parts.append(text)
            logger.info("Incoming %s: %d lines", name, text.count("\n") + 1)
    return "\n".join(parts) + "\n" if parts else ""


def clean_users(text: str) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Users: integer ids, favourite genres as lists, premium as bool."""
    df, malformed = parse_jsonl(text, "users")
    rejects = [malformed]
    user_id, invalid_id, id_as_text = _int_ids(df["user_id"])
    reasons = _first_reason([("null_id", df["user_id"].isna()), ("invalid_id", invalid_id)],
                            df.index)
    df, rej = _reject(df.assign(user_id=user_id, _id_as_text=id_as_text), reasons, "users")
    rejects.append(rej)
    df = _drop_duplicates(df, "user_id", "users", rejects)
    genres, coerced_genres, missing_genres = _as_list(df["favourite_genres"])
    premium = df["premium_user"].map(_as_bool)
    is_bool = df["premium_user"].map(lambda v: isinstance(v, bool))
    invalid_premium = premium.isna()
    out = pd.DataFrame({
        "user_id": df["user_id"].astype("int64"),
        "name": _text(df.get("name"), df.index),
        "city": _text(df.get("city"), df.index),
        "street": _text(df.get("street"), df.index),
        "favourite_genres": genres,
        "premium_user": premium.fillna(False).astype(bool),
    }).reset_index(drop=True)
    rejected = pd.concat(rejects, ignore_index=True)
    repairs = {"type_coerced": coerced_genres + int((~is_bool & ~invalid_premium).sum())
               + int(df["_id_as_text"].sum()),
               "missing_favourite_genres": missing_genres,
               "invalid_premium_flag": int(invalid_premium.sum())}
    return USERS.validate(out), _counts(rejected, repairs), rejected


def clean_artists(text: str) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Artists: base62 ids, genres as lists of lower-case strings."""
    df, malformed = parse_jsonl(text, "artists")
    rejects = [malformed]
    ids = _text(df["id"], df.index)
    reasons = _first_reason([("null_id", ids.isna()),
                             ("invalid_id", ~ids.fillna("").str.match(BASE62_ID))], df.index)
    df, rej = _reject(df.assign(id=ids), reasons, "artists")
    rejects.append(rej)
    df = _drop_duplicates(df, "id", "artists", rejects)
    genres, coerced, missing = _as_list(df["genres"])
    out = pd.DataFrame({"artist_id": df["id"].astype("string"),
                        "name": _text(df.get("name"), df.index),
                        "genres": genres}).reset_index(drop=True)
    rejected = pd.concat(rejects, ignore_index=True)
    return (ARTISTS.validate(out),
            _counts(rejected, {"type_coerced": coerced, "missing_genres": missing}), rejected)


def _release(s: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Release dates 'YYYY' or 'YYYY-MM-DD': (normalised text, year, invalid mask)."""
    text = _text(s, s.index).str.strip()
    year_only = text.str.fullmatch(r"\d{4}").fillna(False).astype(bool)
    full = pd.to_datetime(text.where(~year_only), format="%Y-%m-%d", errors="coerce")
    year = pd.to_numeric(text.where(year_only), errors="coerce").fillna(full.dt.year)
    year = year.where(year.between(1000, 2100)).astype("Int64")
    valid = year.notna()
    invalid = text.notna() & ~valid
    return text.where(valid), year, invalid


def clean_tracks(text: str, artists: pd.DataFrame) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Tracks: numeric fields coerced and range-checked (out of range -> null, counted)."""
    df, malformed = parse_jsonl(text, "tracks")
    rejects = [malformed]
    ids = _text(df["id"], df.index)
    reasons = _first_reason([("null_id", ids.isna()),
                             ("invalid_id", ~ids.fillna("").str.match(BASE62_ID))], df.index)
    df, rej = _reject(df.assign(id=ids), reasons, "tracks")
    rejects.append(rej)
    df = _drop_duplicates(df, "id", "tracks", rejects)

    repairs: dict[str, int] = {"type_coerced": 0, "out_of_range": 0, "missing_value": 0,
                               "invalid_value": 0}
    numeric = {}
    for col, (lo, hi) in TRACK_RANGES.items():
        raw = df[col].map(lambda v: int(v) if isinstance(v, bool) else v) \
            if col == "explicit" else df[col]
        as_str = _is_str(raw)
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        repairs["type_coerced"] += int((as_str & values.notna()).sum())
        bad_type = raw.notna() & values.isna()
        out_of_range = values.notna() & ~values.between(lo, hi)
        if col in INTEGER_FIELDS:
            out_of_range |= values.notna() & (values != np.round(values))
        repairs[f"out_of_range.{col}"] = int(out_of_range.sum())
        repairs["out_of_range"] += int(out_of_range.sum())
        repairs["invalid_value"] += int(bad_type.sum())
        repairs[f"missing_value.{col}"] = int(raw.isna().sum())
        repairs["missing_value"] += int(raw.isna().sum())
        values = values.mask(out_of_range | bad_type)
        numeric[col] = values.astype("Int64") if col in INTEGER_FIELDS else values
    release_date, release_year, bad_date = _release(
        df.get("release_date", pd.Series(None, index=df.index, dtype=object)))
    artist_id = _text(df["id_artist"], df.index)
    unknown_artist = artist_id.notna() & ~artist_id.isin(artists["artist_id"])
    repairs["invalid_release_date"] = int(bad_date.sum())
    repairs["unknown_artist_id"] = int(unknown_artist.sum())
    repairs["null_artist_id"] = int(artist_id.isna().sum())
    out = pd.DataFrame({
        "track_id": df["id"].astype("string"),
        "name": _text(df.get("name"), df.index),
        "artist_id": artist_id.mask(unknown_artist),
        "release_date": release_date.astype("string"),
        "release_year": release_year,
        **{c: v for c, v in numeric.items() if c != "explicit"},
        "explicit": numeric["explicit"].astype("boolean"),
    }).reset_index(drop=True)
    rejected = pd.concat(rejects, ignore_index=True)
    return TRACKS.validate(out), _counts(rejected, repairs), rejected


def clean_sessions(text: str, users: pd.DataFrame, tracks: pd.DataFrame
                   ) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Session events: ids, event types and ISO-8601 timestamps validated; duplicates dropped.

    Repairs (row kept, counted): event-type spelling (``PLAY``, `` like``), non-canonical
    timestamp forms, a track id on an event that carries none, ids given as text. Drops
    (counted, kept in the rejects): malformed lines, null, invalid or unknown ids, unknown event
    types, unparsable timestamps, duplicates (the same event twice once timestamp form and
    event-type spelling are normalised). Flagged but kept: ``session_user_conflict``, events of
    a session whose first event names another user.
    """
    df, malformed = parse_jsonl(text, "sessions")
    rejects = [malformed]
    raw_type = _text(df["event_type"], df.index)
    event_type = raw_type.str.strip().str.lower()
    known_type = event_type.isin(EVENT_TYPES).fillna(False).astype(bool)
    is_track_event = event_type.isin(TRACK_EVENTS).fillna(False).astype(bool)
    session_id, invalid_session, session_as_text = _int_ids(df["session_id"])
    user_id, invalid_user, user_as_text = _int_ids(df["user_id"])
    track_id = _text(df["track_id"], df.index)
    ts_text = _text(df["timestamp"], df.index)
    ts = pd.to_datetime(ts_text, format="ISO8601", utc=True, errors="coerce")
    reasons = _first_reason([
        ("null_session_id", df["session_id"].isna()),
        ("invalid_session_id", invalid_session),
        ("null_user_id", df["user_id"].isna()),
        ("invalid_user_id", invalid_user),
        ("unknown_event_type", ~known_type),
        ("null_track_id", is_track_event & track_id.isna()),
        ("invalid_timestamp", ts.isna()),
        ("unknown_user_id", ~user_id.isin(users["user_id"]).fillna(False).astype(bool)),
        ("unknown_track_id", is_track_event & ~track_id.isin(tracks["track_id"]).fillna(False)
         .astype(bool)),
    ], df.index)
    keep = reasons.isna()
    repaired = pd.DataFrame({
        "event_type_repaired": raw_type != event_type,
        "timestamp_repaired": ~ts_text.str.match(CANONICAL_TIMESTAMP).fillna(False).astype(bool),
        "track_on_non_track_event": ~is_track_event & track_id.notna(),
        "type_coerced": session_as_text | user_as_text,
    })[keep]
    df, rej = _reject(df, reasons, "sessions")
    rejects.append(rej)
    events = pd.DataFrame({
        "session_id": session_id[keep].astype("int64"),
        "timestamp": ts[keep].astype("datetime64[ns, UTC]"),
        "user_id": user_id[keep].astype("int64"),
        "track_id": track_id[keep].where(is_track_event[keep]),
        "event_type": pd.Categorical(event_type[keep], categories=EVENT_TYPES),
    })
    dup = events.duplicated().to_numpy()
    rejects.append(pd.DataFrame({"file": "sessions", "line": df["_line"].to_numpy()[dup],
                                 "reason": "duplicate_line", "raw": df["_raw"].to_numpy()[dup]}))
    repairs = repaired[~dup].sum().to_dict()
    events = events.loc[~dup].sort_values(["session_id", "timestamp"], kind="stable")
    events = events.reset_index(drop=True)
    first_user = events.groupby("session_id")["user_id"].transform("first")
    repairs["session_user_conflict"] = int((events["user_id"] != first_user).sum())
    rejected = pd.concat(rejects, ignore_index=True)
    return EVENTS.validate(events), _counts(rejected, repairs), rejected


def merge_listening_events(events: pd.DataFrame, tracks: pd.DataFrame, artists: pd.DataFrame,
                           users: pd.DataFrame) -> pd.DataFrame:
    """Track events (play/skip/like) with their track, artist and user attributes."""
    track_events = events[events["event_type"].isin(TRACK_EVENTS)]
    track_cols = ["track_id", "artist_id", "popularity", "duration_ms", "explicit", "release_year"]
    merged = (
        track_events
        .merge(tracks[track_cols], on="track_id", how="left", validate="many_to_one")
        .merge(artists.rename(columns={"name": "artist_name"})[["artist_id", "artist_name"]],
               on="artist_id", how="left", validate="many_to_one")
        .merge(users[["user_id", "premium_user"]], on="user_id", how="left",
               validate="many_to_one")
    )
    merged["event_type"] = merged["event_type"].cat.remove_unused_categories()
    return merged


def _handling(kind: str) -> str:
    if kind in DROPPED_KINDS:
        return "dropped"
    return "flagged, kept" if kind == "session_user_conflict" else "repaired"


def report_data_quality(users_q: dict, artists_q: dict, tracks_q: dict, sessions_q: dict,
                        users: pd.DataFrame, artists: pd.DataFrame, tracks: pd.DataFrame,
                        events: pd.DataFrame, users_rej: pd.DataFrame, artists_rej: pd.DataFrame,
                        tracks_rej: pd.DataFrame, sessions_rej: pd.DataFrame
                        ) -> tuple[dict, str, dict, pd.DataFrame]:
    """The data-quality report (JSON and Markdown), its MLflow metrics and all rejected records."""
    found = {"users": users_q, "artists": artists_q, "tracks": tracks_q, "sessions": sessions_q}
    unknown = {f: set(q) - set(DEFECT_KINDS[f]) for f, q in found.items()}
    if any(k for kinds in unknown.values() for k in kinds if "." not in k):
        raise ValueError(f"defect kinds missing from schemas.DEFECT_KINDS: {unknown}")
    # Every kind checked, zeros included, then per-field detail (``out_of_range.tempo``).
    per_file = {f: {**{k: 0 for k in DEFECT_KINDS[f]}, **q} for f, q in found.items()}
    kept = {"users": len(users), "artists": len(artists), "tracks": len(tracks),
            "sessions": len(events)}
    rejected = {"users": users_rej, "artists": artists_rej, "tracks": tracks_rej,
                "sessions": sessions_rej}
    totals: dict[str, int] = {}
    for counts in per_file.values():
        for kind, n in counts.items():
            if "." not in kind:
                totals[kind] = totals.get(kind, 0) + n
    files = {
        f: {"rows_read": kept[f] + len(rejected[f]), "rows_kept": kept[f],
            "rows_dropped": len(rejected[f]), "defects": per_file[f]}
        for f in per_file
    }
    report = {"defects": dict(sorted(totals.items())), "files": files}
    lines = ["# Data quality", "", "| file | read | kept | dropped |", "|---|---:|---:|---:|"]
    lines += [f"| {f} | {v['rows_read']} | {v['rows_kept']} | {v['rows_dropped']} |"
              for f, v in files.items()]
    lines += ["", "| file | defect | count | handling |", "|---|---|---:|---|"]
    for f, v in files.items():
        lines += [f"| {f} | {k} | {n} | {_handling(k)} |" for k, n in v["defects"].items()]
    metrics = {f"dq.{f}.{k}": {"value": float(n), "step": 0}
               for f, v in files.items() for k, n in v["defects"].items()}
    metrics.update({f"dq.{f}.rows_kept": {"value": float(v["rows_kept"]), "step": 0}
                    for f, v in files.items()})
    all_rejected = pd.concat(list(rejected.values()), ignore_index=True)
    logger.info("Data quality: %s", report["defects"])
    return report, "\n".join(lines) + "\n", metrics, all_rejected
