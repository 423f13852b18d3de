"""Project datasets: thin extensions of kedro-datasets where the project needs a guarantee."""

from .generated_text import GeneratedTextDataset
from .incoming import IncomingJsonlDataset
from .mlflow_model import DescribedMlflowModelDataset
from .synthetic_truth import SyntheticTruthDataset

__all__ = [
    "DescribedMlflowModelDataset",
    "GeneratedTextDataset",
    "IncomingJsonlDataset",
    "SyntheticTruthDataset",
]
