"""Project hooks."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl

from .datasets import GeneratedTextDataset


class ProtectUserRawData:
    """Stop before any node runs if a pipeline would write over a user's raw export.

    The generated-file guard of GeneratedTextDataset also holds at save time; checking up front
    means a refused run leaves nothing behind (no ground truth beside someone else's data).
    """

    # tryfirst: before kedro-mlflow opens a run, so a refused run leaves no MLflow run open.
    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        for name in sorted(pipeline.all_outputs()):
            dataset = catalog.get(name)
            if isinstance(dataset, GeneratedTextDataset):
                dataset.ensure_writable()
