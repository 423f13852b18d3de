"""Users registered through ``POST /users``, in SQLite beside the prediction log: one registry
that every worker process reads, so a user registered by one worker is known to all at once,
and the same id cannot be registered twice (its primary key decides, not process memory)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS registered_users (
    user_id       INTEGER PRIMARY KEY,
    registered_at TEXT NOT NULL,   -- ISO-8601 UTC
    record        TEXT NOT NULL    -- the raw users-export record, as JSON
);
"""


def open_database(path: Path, synchronous: str, schema: str) -> sqlite3.Connection:
    """The service's SQLite file (created with its folder if new): usable from any thread (the
    caller serialises with a lock), autocommit, WAL, a 30 s wait for other processes' locks,
    ``schema`` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(schema)
    return db


class AlreadyRegistered(Exception):
    """The id is registered with a different record."""


class UserRegistry:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_database(self.path, "FULL", SCHEMA)

    def register(self, record: dict, persist: Callable[[datetime], object]) -> datetime:
        """Register ``record`` and return when it was registered. ``persist(when)`` (the raw
        file append) runs inside the transaction, so a failed append registers nothing. The
        identical record registered before (a retry) returns its first time; a different one
        raises AlreadyRegistered."""
        text = json.dumps(record, sort_keys=True)
        now = datetime.now(UTC)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock, across processes
            try:
                row = self._db.execute(
                    "SELECT record, registered_at FROM registered_users WHERE user_id = ?",
                    (record["user_id"],),
                ).fetchone()
                if row is not None:
                    self._db.execute("ROLLBACK")
                    if row[0] == text:
                        return datetime.fromisoformat(row[1])
                    raise AlreadyRegistered(record["user_id"])
                self._db.execute(
                    "INSERT INTO registered_users VALUES (?, ?, ?)",
                    (record["user_id"], now.isoformat(), text),
                )
                persist(now)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return now

    def get(self, user_id: int) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT record FROM registered_users WHERE user_id = ?", (user_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def known(self, user_ids: Iterable[int]) -> set[int]:
        """Which of ``user_ids`` are registered."""
        ids = sorted(set(user_ids))
        found: set[int] = set()
        with self._lock:
            for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    r[0]
                    for r in self._db.execute(
                        f"SELECT user_id FROM registered_users WHERE user_id IN ({marks})", chunk
                    )
                )
        return found

    def adopt(self, records: Iterable[dict]) -> int:
        """Register records found in the raw files but not here (a crash between the file
        append and the commit, or files from before the registry); returns how many."""
        rows = [
            (r["user_id"], datetime.now(UTC).isoformat(), json.dumps(r, sort_keys=True))
            for r in records
            if isinstance(r.get("user_id"), int) and not isinstance(r.get("user_id"), bool)
        ]
        with self._lock:
            before = self._count()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO registered_users VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")
            return self._count() - before

    def count(self) -> int:
        with self._lock:
            return self._count()

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM registered_users").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
