"""kedro-mlflow's model dataset, logging each model as MLflow users expect to find it."""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from kedro_mlflow.io.models import MlflowModelTrackingDataset
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What a logged model needs to load and predict; pinned to the versions that trained it.
MODEL_REQUIREMENTS = (
    "cloudpickle",
    "lightfm-next",
    "mlflow",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
)


class DescribedMlflowModelDataset(MlflowModelTrackingDataset):
    """``MlflowModelTrackingDataset`` that logs every model with a signature and an input
    example taken from the model itself, with the project's code shipped beside it (so the
    environment does not pin ``pozytywka``, a package no index has) and with pinned
    requirements of the libraries it needs. ``save_args`` given in the catalog win."""

    def _save(self, model) -> None:
        extra: dict = {
            "code_paths": [str(PACKAGE_DIR)],
            "pip_requirements": [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
        }
        example = input_example(model)
        if example is not None:
            extra["input_example"] = example
            extra["signature"] = _signature(model, example)
        # kedro-mlflow's own save_args (untyped there) win over these.
        given: dict = self._save_args  # type: ignore[has-type]
        self._save_args = {**extra, **given}
        super()._save(model)


def input_example(model) -> pd.DataFrame | None:
    """A request the model answers: its own ``input_example()``, or one all-zero row of the
    features a fitted scikit-learn estimator was trained on."""
    if hasattr(model, "input_example"):
        return model.input_example()
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    return pd.DataFrame(np.zeros((1, len(names))), columns=list(names))


def _signature(model, example: pd.DataFrame) -> ModelSignature:
    """Inferred from the example and the model's answer to it; the columns the model names
    in ``optional_inputs`` (such as the recommender's ``k``) may be left out of a request."""
    answer = _predict(model, example)
    with warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold missing values: the examples' integer
        # columns (the recommender's ids, ranks and k) never do.
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        signature = infer_signature(example, answer)
    optional = set(getattr(model, "optional_inputs", ()))
    if not optional or signature.inputs is None:
        return signature
    columns: list = [
        ColSpec(c.type, c.name, required=c.name not in optional)
        for c in signature.inputs.inputs
        if isinstance(c, ColSpec)
    ]
    return ModelSignature(inputs=Schema(columns), outputs=signature.outputs)


def _predict(model, example: pd.DataFrame):
    if isinstance(model, PythonModel):
        return model.predict(None, example)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(example)
    return model.predict(example)
