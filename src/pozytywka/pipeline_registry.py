"""Project pipelines."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from pozytywka.pipelines import (
    ab_analysis,
    data_processing,
    feature_engineering,
    oracle_evaluation,
    recommendation,
    reporting,
    skip_prediction,
    synthetic_data,
)
from pozytywka.pipelines.recommendation.nodes import search_worker

# In data order. Registered explicitly (not by find_pipelines) so that the composite pipelines
# below resolve whichever name `kedro run --pipeline` asks for.
PIPELINES = {
    "synthetic_data": synthetic_data,
    "data_processing": data_processing,
    "feature_engineering": feature_engineering,
    "recommendation": recommendation,
    "skip_prediction": skip_prediction,
    "oracle_evaluation": oracle_evaluation,
    "reporting": reporting,
    "ab_analysis": ab_analysis,
}


def register_pipelines() -> dict[str, Pipeline]:
    """Each pipeline by name, plus:

    ``from_raw``: everything after generation, on the exports in ``data/01_raw`` (a user's
    own, or the generator's): processing, features, both models, the oracle where the
    generator's truth belongs to those files, and every report;
    ``__default__``: generate the synthetic catalogue, then ``from_raw``;
    ``ab_analysis``: data_processing, then the A/B outcomes of the service's prediction log
    (after serving; not part of the default run).
    ``recommendation`` and ``skip_prediction`` include their oracle and report nodes (tagged
    with the pipeline's name), so each runs alone on the outputs of an earlier run.
    ``tune``: one worker of the LightFM search on the shared study (not part of the default
    run; ``pozytywka tune --workers N`` starts N of them).
    """
    # Namespaced, so kedro-viz draws each pipeline as one box that opens; dataset names stay
    # as the catalog has them.
    pipelines = {
        name: Pipeline(
            module.create_pipeline(), namespace=name, prefix_datasets_with_namespace=False
        )
        for name, module in PIPELINES.items()
    }
    pipelines["from_raw"] = sum(
        (p for name, p in pipelines.items() if name not in ("synthetic_data", "ab_analysis")),
        Pipeline([]),
    )
    pipelines["__default__"] = pipelines["synthetic_data"] + pipelines["from_raw"]
    # The events after the answers come from the exports and incoming/ files, cleaned afresh.
    pipelines["ab_analysis"] = pipelines["data_processing"] + pipelines["ab_analysis"]
    for name in ["recommendation", "skip_prediction"]:
        pipelines[name] = pipelines["from_raw"].only_nodes_with_tags(name)
    pipelines["tune"] = _tune(pipelines["recommendation"])
    return pipelines


def _tune(recommendation: Pipeline) -> Pipeline:
    """The search node's inputs (the catalog files of an earlier run: training data, the
    variant comparison, the feature matrices) into ``search_worker``, which only adds
    trials to the study in ``recommendation.search.storage``."""
    (search,) = recommendation.only_nodes("recommendation.search_hyperparameters").nodes
    worker = Node(search_worker, search.inputs, "search_worker_summary", name="search_worker")
    return Pipeline([worker], tags=["tune"])
