"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from pozytywka.pipelines import (
    data_processing,
    feature_engineering,
    recommendation,
    skip_prediction,
    synthetic_data,
)

# In data order. Registered explicitly (not by find_pipelines) so that the composite pipelines
# below resolve whichever name `kedro run --pipeline` asks for.
PIPELINES = {
    "synthetic_data": synthetic_data,
    "data_processing": data_processing,
    "feature_engineering": feature_engineering,
    "recommendation": recommendation,
    "skip_prediction": skip_prediction,
}


def register_pipelines() -> dict[str, Pipeline]:
    """Each pipeline by name, plus:

    ``__default__``: generate the synthetic catalogue and run everything after it;
    ``from_raw``: processing and features of exports a user placed in ``data/01_raw`` (model
    evaluation reports oracle ceilings, which need the generator's hidden truth).
    """
    pipelines = {name: module.create_pipeline() for name, module in PIPELINES.items()}
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines["from_raw"] = pipelines["data_processing"] + pipelines["feature_engineering"]
    return pipelines
