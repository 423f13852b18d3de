"""Where a run's time and memory go: each node's wall time and peak resident memory."""

from __future__ import annotations

import resource
import threading
import time
from pathlib import Path

STATM = Path("/proc/self/statm")
PAGE_MB = resource.getpagesize() / 2**20


def resident_mb() -> float:
    """The process's resident memory now (Linux); elsewhere its peak so far."""
    try:
        return int(STATM.read_text().split()[1]) * PAGE_MB
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakSampler:
    """Samples resident memory every ``interval`` seconds in a daemon thread between
    ``start()`` and ``stop()``, which returns (wall seconds, peak MB)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self._stop.clear()
        self._peak, self._t0 = resident_mb(), time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, resident_mb())

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        seconds = time.perf_counter() - self._t0
        return seconds, max(self._peak, resident_mb())
