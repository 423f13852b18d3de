"""Fast JSON Lines writing for the generator: Arrow string kernels instead of per-row Python.

The session log dominates the export (millions of lines with a fixed schema), so its lines are
assembled column-wise; entity files are small and go through pandas' ``to_json``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_STR = pa.large_string()
_MS_PER_DAY = 86_400_000


def _lit(text: str) -> pa.Scalar:
    return pa.scalar(text, _STR)


_HMS = pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)], _STR)
_MILLIS = pa.array([f"{m:03d}" for m in range(1000)], _STR)


def iso_ms_strings(ns_since_epoch: np.ndarray) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS.mmm`` for int64 UTC nanoseconds, via lookup tables (no strftime)."""
    ms = np.asarray(ns_since_epoch, dtype=np.int64) // 1_000_000
    days, rem = np.divmod(ms, _MS_PER_DAY)
    if len(days) == 0:
        return pa.array([], _STR)
    first = int(days.min())
    dates = pa.array(
        np.datetime_as_string(np.arange(first, int(days.max()) + 1).astype("datetime64[D]")).astype(
            object
        ),
        _STR,
    )
    return pc.binary_join_element_wise(
        pc.take(dates, pa.array(days - first)),
        _lit("T"),
        pc.take(_HMS, pa.array(rem // 1000)),
        _lit("."),
        pc.take(_MILLIS, pa.array(rem % 1000)),
        _lit(""),
    )


def _json_number(values: pd.Series) -> pa.Array:
    return pc.fill_null(pc.cast(pa.array(values, from_pandas=True), _STR), _lit("null"))


def _json_string(values: pd.Series | pa.Array) -> pa.Array:
    """Quoted as is: the generator's strings (base62 ids, event types, ISO timestamps and its
    fixed junk words) never need JSON escaping."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, from_pandas=True)
    arr = pc.cast(arr, _STR)
    return pc.fill_null(
        pc.binary_join_element_wise(_lit('"'), arr, _lit('"'), _lit("")), _lit("null")
    )


def _contiguous(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def event_lines(events: pd.DataFrame) -> pa.Array:
    """One newline-terminated JSON object per event, keys in contract order.

    ``timestamp`` must already be text.
    """
    if events.empty:
        return pa.array([], _STR)
    return _contiguous(
        pc.binary_join_element_wise(
            _lit('{"session_id":'),
            _json_number(events["session_id"]),
            _lit(',"timestamp":'),
            _json_string(events["timestamp"]),
            _lit(',"user_id":'),
            _json_number(events["user_id"]),
            _lit(',"track_id":'),
            _json_string(events["track_id"]),
            _lit(',"event_type":'),
            _json_string(events["event_type"]),
            _lit("}\n"),
            _lit(""),
        )
    )


def frame_lines(df: pd.DataFrame) -> pa.Array:
    """Newline-terminated JSON lines of any frame via pandas (for the small entity files)."""
    if df.empty:
        return pa.array([], _STR)
    text = df.to_json(orient="records", lines=True, force_ascii=False)
    return pa.array(text.splitlines(keepends=True), _STR)


def join_lines(lines: pa.Array) -> str:
    """The text of newline-terminated lines: their Arrow data buffer, decoded once."""
    lines = _contiguous(lines).cast(_STR)
    if len(lines) == 0:
        return ""
    offsets = np.frombuffer(
        lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8
    )
    data = memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]]
    return str(data, "utf-8")
