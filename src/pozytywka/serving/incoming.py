"""Appends what ``POST /events`` and ``POST /users`` receive to the raw exports' format, one
file a day under the ``incoming_{file}`` catalog path, where data_processing picks it up."""

from __future__ import annotations

import fcntl
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path


class IncomingWriter:
    """One ``write`` per batch on an ``O_APPEND`` descriptor under an exclusive ``flock``: lines
    from concurrent requests (threads or worker processes) never interleave, and a batch is
    flushed to the OS before the request is answered."""

    def __init__(self, directory: str | Path, root: str | Path | None = None):
        self.directory = Path(directory)
        self.root = Path(root) if root is not None else None
        self._lock = threading.Lock()

    def shown(self, path: Path) -> str:
        """``path`` as answers show it: relative to the project root (no absolute server
        paths in responses)."""
        if self.root is not None and path.is_relative_to(self.root):
            return str(path.relative_to(self.root))
        return path.name

    def path_for(self, when: datetime) -> Path:
        return self.directory / f"{when:%Y-%m-%d}.jsonl"

    def append(self, records: list[dict], when: datetime | None = None) -> Path:
        """Append ``records`` to the file of ``when``'s day (default: now, UTC)."""
        path = self.path_for(when or datetime.now(UTC))
        # ASCII JSON: no raw line separator (U+2028, U+0085) or lone surrogate in the file.
        data = "".join(json.dumps(r) + "\n" for r in records).encode("ascii")
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
        return path

    def read_all(self) -> list[dict]:
        """Every record written so far (lines that fail to parse are skipped; the pipeline
        counts them as malformed)."""
        out = []
        for path in sorted(self.directory.glob("*.jsonl")):
            # Only "\n" ends a record: str.splitlines() would also split inside a JSON string at
            # U+2028 or U+0085, which files written before these were escaped may hold.
            for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out
