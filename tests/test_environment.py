"""What the installed environment must provide for the pipelines to be fast."""

import lightfm._lightfm_fast as lightfm_fast


def test_lightfm_uses_its_openmp_build():
    # lightfm falls back to a single-threaded build (with only a warning) when OpenMP is missing.
    assert lightfm_fast.fit_warp.__module__ == "lightfm._lightfm_fast_openmp"
