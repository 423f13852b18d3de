"""The catalogue as kedro-viz draws it: every dataset in a layer, layers in data order along
every pipeline, previews of the Markdown reports, none of files a default run does not write."""

from __future__ import annotations

import inspect

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import CatalogConfigResolver, DataCatalog

from pozytywka.datasets import MarkdownDataset
from pozytywka.pipeline_registry import register_pipelines
from tests.project import PROJECT_ROOT

# Kedro's data-engineering convention, in data order.
LAYERS = (
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
)
PIPELINES = register_pipelines()
DATASETS = sorted(
    {d for p in PIPELINES.values() for d in p.datasets() if not d.startswith("params:")}
    - {"parameters"}
)


@pytest.fixture(scope="module")
def catalog_config() -> dict:
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    return loader["catalog"]


@pytest.fixture(scope="module")
def viz(catalog_config) -> dict[str, dict]:
    """Each dataset's ``metadata: kedro-viz`` (patterns resolved)."""
    resolver = CatalogConfigResolver(catalog_config)
    return {
        d: (resolver.resolve_pattern(d).get("metadata") or {}).get("kedro-viz") or {}
        for d in DATASETS
    }


def test_every_dataset_is_in_a_layer_of_the_convention(viz):
    assert {d: v.get("layer") for d, v in viz.items() if v.get("layer") not in LAYERS} == {}


def test_no_dataset_is_in_an_earlier_layer_than_an_input_of_its_node(viz):
    rank = {d: LAYERS.index(v["layer"]) for d, v in viz.items() if v.get("layer") in LAYERS}
    backwards = {
        f"{node.name}: {i} ({viz[i]['layer']}) -> {o} ({viz[o]['layer']})"
        for pipeline in PIPELINES.values()
        for node in pipeline.nodes
        for i in node.inputs
        for o in node.outputs
        if i in rank and o in rank and rank[o] < rank[i]
    }
    assert backwards == set()


def test_datasets_a_default_run_does_not_write_are_not_previewed(catalog_config, viz):
    catalog = DataCatalog.from_config(catalog_config)
    default = PIPELINES["__default__"].datasets()
    others = [d for d in DATASETS if d not in default]
    assert {"ab_report", "ab_served_outcomes", "ab_outcomes_plot"} <= set(others)
    previewed = [d for d in others if hasattr(catalog.get(d), "preview")]
    assert [d for d in previewed if viz[d].get("preview") is not False] == []


def test_markdown_reports_are_previewed(catalog_config, viz, tmp_path):
    catalog = DataCatalog.from_config(catalog_config)
    reports = [d for d in DATASETS if d.endswith("_markdown")]
    assert len(reports) == 4
    for name in reports:
        assert isinstance(catalog.get(name), MarkdownDataset), name
    assert all(viz[d].get("preview") is not False for d in reports if not d.startswith("ab_"))
    # kedro-viz renders an HTMLPreview's Markdown (headings, tables); it names the type so.
    dataset = MarkdownDataset(filepath=str(tmp_path / "report.md"))
    dataset.save("# Report\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert dataset.preview().startswith("# Report\n")
    assert inspect.signature(dataset.preview).return_annotation.__name__ == "HTMLPreview"
