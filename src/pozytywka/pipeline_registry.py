"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline under ``pozytywka.pipelines`` by its folder name.

    ``__default__`` generates the synthetic catalogue and runs everything after it;
    ``from_raw`` is the same without generation, for exports a user placed in ``data/01_raw``.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["from_raw"] = sum(
        (p for name, p in pipelines.items() if name not in {"__default__", "synthetic_data"}),
        Pipeline([]),
    )
    return pipelines
