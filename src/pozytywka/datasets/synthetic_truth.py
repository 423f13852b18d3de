"""The synthetic generator's hidden truth, readable only while it belongs to the raw data."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset

logger = logging.getLogger(__name__)

TABLES = ("users", "tracks")
RAW_FILES = ("users", "artists", "tracks", "sessions")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


class SyntheticTruthDataset(AbstractDataset[dict, dict | None]):
    """A folder with the truth (``users.parquet``, ``tracks.parquet``, ``params.json``) and
    ``belongs_to.json``, the SHA-256 of each raw export it was generated with.

    ``load`` returns ``{"users", "tracks", "params"}`` only if every raw file in ``raw_dir``
    still has the recorded hash. Otherwise (no truth, or a user's own export in ``raw_dir``,
    or a generated file edited since) it returns ``None`` and logs why, so oracle figures
    appear only beside the data the truth describes, never stale ones.
    """

    def __init__(self, path: str, raw_dir: str, metadata: dict | None = None):
        self._path = Path(path)
        self._raw_dir = Path(raw_dir)
        self.metadata = metadata

    def save(self, data: dict) -> None:
        self._path.mkdir(parents=True, exist_ok=True)
        for table in TABLES:
            data[table].to_parquet(self._path / f"{table}.parquet", index=False)
        (self._path / "params.json").write_text(json.dumps(data["params"], indent=2))
        (self._path / "belongs_to.json").write_text(json.dumps(data["raw_sha256"], indent=2))

    def mismatch(self) -> str | None:
        """Why the truth does not describe the raw data now, or None if it does."""
        manifest = self._path / "belongs_to.json"
        if not manifest.exists():
            return f"no synthetic truth in {self._path}"
        recorded = json.loads(manifest.read_text())
        for name in RAW_FILES:
            raw = self._raw_dir / f"{name}.jsonl"
            if not raw.exists() or sha256_file(raw) != recorded.get(name):
                return f"{raw} is not the file the synthetic truth was generated with"
        return None

    def load(self) -> dict | None:
        reason = self.mismatch()
        if reason:
            logger.info("Oracle left out: %s", reason)
            return None
        return {
            **{t: pd.read_parquet(self._path / f"{t}.parquet") for t in TABLES},
            "params": json.loads((self._path / "params.json").read_text()),
        }

    def _exists(self) -> bool:
        return (self._path / "belongs_to.json").exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "raw_dir": str(self._raw_dir)}
