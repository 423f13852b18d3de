"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from pozytywka.pipelines import data_processing, feature_engineering, synthetic_data

# In data order. Registered explicitly (not by find_pipelines) so that the composite pipelines
# below resolve whichever name `kedro run --pipeline` asks for.
PIPELINES = {
    "synthetic_data": synthetic_data,
    "data_processing": data_processing,
    "feature_engineering": feature_engineering,
}


def register_pipelines() -> dict[str, Pipeline]:
    """Each pipeline by name, plus:

    ``__default__``: generate the synthetic catalogue and run everything after it;
    ``from_raw``: everything but generation, for exports a user placed in ``data/01_raw``.
    """
    pipelines = {name: module.create_pipeline() for name, module in PIPELINES.items()}
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["from_raw"] = sum(
        (p for name, p in pipelines.items() if name not in {"__default__", "synthetic_data"}),
        Pipeline([]),
    )
    return pipelines
