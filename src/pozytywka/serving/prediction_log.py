"""The durable prediction log: one SQLite row per answer, in WAL mode.

SQLite serialises writers (threads of one process through a lock, processes through its file
locks with a busy timeout), so concurrent requests never interleave or lose records, and a
committed row survives a restart of the service (``synchronous=FULL``: also of the machine).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ..experiments.outcomes import EXPERIMENT_OF, events_from_records
from ..experiments.report import outcome_summary
from .registry import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at     TEXT    NOT NULL,   -- ISO-8601 UTC, when the answer was sent
    endpoint      TEXT    NOT NULL,   -- route, e.g. /playlists
    experiment    TEXT,               -- playlists | skip_predictions | null (no A/B test)
    variant       TEXT,               -- base | advanced | null
    forced        INTEGER NOT NULL DEFAULT 0,  -- 1 when the variant was forced by the route
    model_version TEXT,
    user_id       INTEGER,
    status        INTEGER NOT NULL,   -- HTTP status of the answer
    latency_ms    REAL    NOT NULL,
    request       TEXT    NOT NULL,   -- the request body as received (capped, see below)
    response      TEXT    NOT NULL,   -- the answer summarised: ids served, hash (answer_summary)
    salt          TEXT                -- the experiment's assignment salt when it answered
);
CREATE INDEX IF NOT EXISTS predictions_experiment ON predictions (experiment, variant);
CREATE INDEX IF NOT EXISTS predictions_failed ON predictions (id) WHERE status >= 400;
-- The bytes of request and answer text the log holds, kept with every insert and delete, so
-- retention by bytes never scans the log.
CREATE TABLE IF NOT EXISTS log_size (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER);
"""
SIZE = "length(CAST(request AS BLOB)) + length(CAST(response AS BLOB))"


@dataclass
class Record:
    logged_at: str
    endpoint: str
    experiment: str | None
    variant: str | None
    forced: bool
    model_version: str | None
    user_id: int | None
    status: int
    latency_ms: float
    request: str
    response: str
    salt: str | None = None


# Logs written before a column existed get it on open (old rows: NULL).
ADDED_COLUMNS = {"salt": "TEXT"}


def capped(text: str, limit: int) -> str:
    """``text`` whole if it fits ``limit`` bytes of UTF-8, else its head and how long it was:
    an oversized request is logged, but cannot grow the log by its size."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    head = data[:limit].decode("utf-8", "ignore")
    return f"{head}... [truncated: {len(data):,} bytes]"


# What a successful answer keeps in the log: what the A/B analysis and an audit read (who
# answered, for whom, the ids served and the predictions), never names or echoed input.
ANSWER_KEYS = (
    "variant",
    "model_version",
    "strategy",
    "user_id",
    "members",
    "cold_start_members",
    "track_id",
    "prediction",
    "skip_probability",
    "accepted",
)
ID_KEYS = ("track_id", "id", "user_id")  # of each entry of a list an answer serves
ERROR_TEXT = 200  # characters of an error message kept


def answer_summary(status: int, body: bytes, limit: int) -> str:
    """The log's record of an answer, at most about ``limit`` bytes whatever was asked: its
    size and SHA-256 (the whole answer, to check a copy against), and for a 2xx JSON answer
    the ``ANSWER_KEYS`` fields with each served list cut to its entries' ids (``tracks``:
    ``[{"track_id": ...}]``), for an error its status and messages without their input."""
    summary: dict = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        answer = None
    if 200 <= status < 300:
        summary.update(_served(answer))
    else:
        summary.update(status=status, error=_error_text(answer))
    text = json.dumps(summary, ensure_ascii=False)
    if len(text.encode()) <= limit:
        return text
    kept = {k: v for k, v in summary.items() if not isinstance(v, list | dict)}  # < 1 KB
    return json.dumps({**kept, "truncated": True}, ensure_ascii=False)


def _served(answer) -> dict:
    if isinstance(answer, list):
        return {"items": [_ids(entry) for entry in answer]}
    if not isinstance(answer, dict):
        return {"value": answer} if isinstance(answer, int | float | bool) else {}
    out = {k: answer[k] for k in ANSWER_KEYS if k in answer}
    for key, value in answer.items():  # served lists (tracks...), empty ones too
        if isinstance(value, list) and all(isinstance(entry, dict) for entry in value):
            out.setdefault(key, [_ids(entry) for entry in value])
    return out


def _ids(entry) -> dict | int | float | str | None:
    if isinstance(entry, dict):
        return {k: entry[k] for k in ID_KEYS if k in entry}
    return entry if isinstance(entry, int | float | str) else None


def _error_text(answer) -> list[str] | str | None:
    """An error answer's messages (validation errors: type, location and message, never
    the input they quote), each cut to ERROR_TEXT characters, at most five."""
    detail = answer.get("detail") if isinstance(answer, dict) else answer
    if isinstance(detail, list):
        return [
            " ".join(
                [str(e.get("type", "")), ".".join(map(str, e.get("loc", []))), str(e.get("msg"))]
            )[:ERROR_TEXT]
            if isinstance(e, dict)
            else str(e)[:ERROR_TEXT]
            for e in detail[:5]
        ]
    return None if detail is None else str(detail)[:ERROR_TEXT]


class PredictionLog:
    """``retention``: keep at most ``max_rows`` records, none older than ``max_age_days``
    and at most ``max_bytes`` of requests and answers (each optional); the oldest go first,
    checked on open and every ``PRUNE_EVERY`` appends. Failed answers (4xx, 5xx) are kept
    apart, at most ``max_failed_rows`` of them, the oldest going first, so a flood of bad
    requests cannot push answered A/B traffic out. SQLite reuses the freed pages, so the
    file stops growing at about the rows kept."""

    PRUNE_EVERY = 1000

    def __init__(
        self, path: str | Path, synchronous: str = "NORMAL", retention: dict | None = None
    ):
        if synchronous not in {"NORMAL", "FULL"}:
            raise ValueError(f"prediction_log.synchronous must be NORMAL or FULL: {synchronous}")
        self.retention = {
            "max_rows": None,
            "max_age_days": None,
            "max_bytes": None,
            "max_failed_rows": None,
            **(retention or {}),
        }
        self._appended = 0
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_database(self.path, synchronous, SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(predictions)")}
        for column, kind in ADDED_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE predictions ADD COLUMN {column} {kind}")
        with self._transaction():  # a log from before the size was kept: measured once
            self._db.execute(
                f"INSERT OR IGNORE INTO log_size SELECT 0, COALESCE(SUM({SIZE}), 0) "
                "FROM predictions"
            )
        self.prune()

    def append(self, record: Record) -> None:
        """Commit one record (its own transaction) before the caller answers."""
        size = len(record.request.encode("utf-8", "replace"))
        size += len(record.response.encode("utf-8", "replace"))
        with self._lock, self._transaction():  # the row and the size it adds, at once
            self._db.execute("UPDATE log_size SET bytes = bytes + ? WHERE id = 0", (size,))
            self._db.execute(
                "INSERT INTO predictions (logged_at, endpoint, experiment, variant, forced, "
                "model_version, user_id, status, latency_ms, request, response, salt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.logged_at,
                    record.endpoint,
                    record.experiment,
                    record.variant,
                    int(record.forced),
                    record.model_version,
                    record.user_id,
                    record.status,
                    record.latency_ms,
                    record.request,
                    record.response,
                    record.salt,
                ),
            )
        self._appended += 1
        if self._appended % self.PRUNE_EVERY == 0:
            self.prune()

    def prune(self) -> int:
        """Apply the retention now; returns the records removed."""
        with self._lock, self._transaction():
            return self._prune()

    def _prune(self) -> int:
        max_rows, max_age = self.retention["max_rows"], self.retention["max_age_days"]
        removed = self._prune_failed() + self._prune_bytes()
        if max_rows is not None:
            last = self._db.execute("SELECT MAX(id) FROM predictions").fetchone()[0] or 0
            removed += self._delete("id <= ?", (last - int(max_rows),))
        if max_age is not None:
            cutoff = (datetime.now(UTC) - timedelta(days=float(max_age))).isoformat()
            # Ids grow with time: the old rows are a prefix, found without an index.
            removed += self._delete(
                "id < coalesce((SELECT id FROM predictions WHERE logged_at >= ? ORDER BY id "
                "LIMIT 1), (SELECT MAX(id) + 1 FROM predictions))",
                (cutoff,),
            )
        return removed

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (the connection autocommits otherwise), taken at once."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _delete(self, where: str, args: tuple) -> int:
        """Delete the records ``where`` holds, and their bytes from the log's size."""
        freed = self._db.execute(
            f"SELECT COALESCE(SUM({SIZE}), 0) FROM predictions WHERE {where}", args
        ).fetchone()[0]
        self._db.execute("UPDATE log_size SET bytes = bytes - ? WHERE id = 0", (freed,))
        return self._db.execute(f"DELETE FROM predictions WHERE {where}", args).rowcount

    def _prune_failed(self) -> int:
        """The oldest failed answers past ``max_failed_rows``, answered ones untouched."""
        if self.retention["max_failed_rows"] is None:
            return 0
        return self._delete(
            "status >= 400 AND id <= (SELECT id FROM predictions WHERE status >= 400 "
            "ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (int(self.retention["max_failed_rows"]),),
        )

    def _prune_bytes(self, chunk: int = 1000) -> int:
        """The oldest records until the rest hold at most ``max_bytes``, read a chunk at a
        time from the oldest (only as far as the excess reaches)."""
        if self.retention["max_bytes"] is None:
            return 0
        held = self._db.execute("SELECT bytes FROM log_size WHERE id = 0").fetchone()[0]
        over, cut, after = held - int(self.retention["max_bytes"]), None, -1
        while over > 0:
            sizes = self._db.execute(
                f"SELECT id, {SIZE} FROM predictions WHERE id > ? ORDER BY id LIMIT ?",
                (after, chunk),
            ).fetchall()
            if not sizes:
                break
            ids = np.array([i for i, _ in sizes])
            reached = np.cumsum([size for _, size in sizes]) >= over
            cut = int(ids[reached.argmax()] if reached.any() else ids[-1])
            over -= sum(size for i, size in sizes if i <= cut)
            after = int(ids[-1])
        return 0 if cut is None else self._delete("id <= ?", (cut,))

    def size(self) -> int:
        """Bytes of request and answer text the log holds."""
        with self._lock:
            return self._db.execute("SELECT bytes FROM log_size WHERE id = 0").fetchone()[0]

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own: a snapshot of the log (WAL) that neither takes
        the writers' lock nor holds their appends back."""
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0)
        try:
            yield db
        finally:
            db.close()

    def recent_answers(self, limit: int) -> pd.DataFrame:
        """The newest ``limit`` records of the answering routes (``EXPERIMENT_OF``, forced
        ones included), oldest first, without their requests: what the outcomes join reads."""
        routes = [r + arm for r in EXPERIMENT_OF for arm in ("", "/base", "/advanced")]
        with self.reader() as db:
            return pd.read_sql_query(
                "SELECT * FROM (SELECT id, logged_at, endpoint, experiment, variant, forced, "
                "user_id, status, response FROM predictions WHERE endpoint IN "
                f"({', '.join('?' * len(routes))}) ORDER BY id DESC LIMIT ?) ORDER BY id",
                db,
                params=(*routes, int(limit)),
            )

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]

    def frame(self) -> pd.DataFrame:
        with self._lock:
            return pd.read_sql_query("SELECT * FROM predictions ORDER BY id", self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()


# One pass over the log: each arm's counts and what it answered (a JSON field of the
# assigned, successful answers); the distinct salts and versions as JSON arrays.
_ASSIGNED_OK = "forced = 0 AND status = 200"
_ARMS_QUERY = f"""
SELECT experiment, variant, SUM(forced = 0), SUM(forced != 0),
       COUNT(DISTINCT CASE WHEN forced = 0 THEN user_id END),
       SUM(forced = 0 AND status >= 400), SUM({_ASSIGNED_OK}),
       json_group_array(DISTINCT CASE WHEN forced = 0 THEN salt END),
       json_group_array(DISTINCT CASE WHEN {_ASSIGNED_OK} THEN model_version END),
       AVG(CASE WHEN {_ASSIGNED_OK} AND experiment = 'playlists'
           THEN json_array_length(response, '$.tracks') END),
       AVG(CASE WHEN {_ASSIGNED_OK} AND experiment = 'skip_predictions'
           THEN json_extract(response, '$.prediction') = 'SKIP' END),
       AVG(CASE WHEN {_ASSIGNED_OK} AND experiment = 'skip_predictions'
           THEN json_extract(response, '$.skip_probability') END)
FROM predictions WHERE experiment IS NOT NULL GROUP BY experiment, variant
"""


def ab_summary(log: PredictionLog) -> dict:
    """Per experiment and variant: answers, users, errors, latency percentiles, and what the
    variant answered (playlist length; SKIP share and mean skip probability). Answers a route
    forced to an arm are counted (``forced``) but kept out of every other figure, which
    describes the arm as the hash assigned it; ``salts``: the assignment salts logged;
    ``model_versions``: what answered the arm (e.g. ``history-baseline``, ``ranker-<digest>``).
    Aggregate queries on a snapshot of the log: it is never loaded, and appends go on."""
    out: dict = {}
    with log.reader() as db:
        for row in db.execute(_ARMS_QUERY).fetchall():
            experiment, variant, answers, forced, users, errors, ok = row[:7]
            salts, versions, length, share, probability = row[7:]
            entry: dict = {"answers": answers, "forced": forced, "users": users}
            entry["errors"] = errors
            entry["salts"] = sorted(v for v in json.loads(salts) if v is not None)
            entry["model_versions"] = sorted(v for v in json.loads(versions) if v is not None)
            if ok:
                latency = np.array(
                    [r[0] for r in db.execute(
                        f"SELECT latency_ms FROM predictions WHERE experiment = ? AND "
                        f"variant IS ? AND {_ASSIGNED_OK}",
                        (experiment, variant),
                    )]
                )  # fmt: skip
                for q in (50, 95, 99):
                    entry[f"latency_ms_p{q}"] = round(float(np.percentile(latency, q)), 3)
                if experiment == "playlists":  # None: no answer lists its tracks
                    entry["mean_playlist_length"] = length
                elif experiment == "skip_predictions":
                    entry["skip_share"], entry["mean_skip_probability"] = share, probability
            out.setdefault(experiment, {})[variant if isinstance(variant, str) else "none"] = entry
    return out


def ab_summary_with_outcomes(
    log: PredictionLog, events: list[dict], params: dict, outcome_answers: int
) -> dict:
    """``ab_summary`` plus, under ``outcomes``, what users did after the newest
    ``outcome_answers`` answers: the events ``POST /events`` received, joined as the
    ab_analysis pipeline joins them (which reads every answer and the export, and adds
    intervals over time and the simulator's truth); ``outcomes.answers_read`` says how many."""
    summary = ab_summary(log)
    if not params:
        return {**summary, "outcomes": {}}
    answered = log.recent_answers(outcome_answers)
    outcomes = outcome_summary(answered, events_from_records(events), params)
    return {**summary, "outcomes": {**outcomes, "answers_read": len(answered)}}
