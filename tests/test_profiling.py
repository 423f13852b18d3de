"""Node profiling: the peak sampler sees memory a node held only while it ran."""

from __future__ import annotations

import time

import numpy as np

from pozytywka.profiling import PeakSampler, resident_mb


def test_the_peak_includes_memory_freed_before_the_node_ended():
    sampler = PeakSampler(interval=0.01)
    sampler.start()
    block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
    time.sleep(0.2)
    del block
    seconds, peak = sampler.stop()
    assert seconds >= 0.2
    assert peak >= resident_mb() + 150
