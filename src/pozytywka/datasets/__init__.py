"""Project datasets: thin extensions of kedro-datasets where the project needs a guarantee."""

from .generated_text import GeneratedTextDataset
from .incoming import IncomingJsonlDataset
from .markdown import MarkdownDataset
from .mlflow_metrics import BatchedMlflowMetricsDataset
from .mlflow_model import DescribedMlflowModelDataset
from .prediction_log import OptionalParquetDataset, PredictionLogDataset
from .synthetic_truth import SyntheticTruthDataset

__all__ = [
    "BatchedMlflowMetricsDataset",
    "DescribedMlflowModelDataset",
    "GeneratedTextDataset",
    "IncomingJsonlDataset",
    "MarkdownDataset",
    "OptionalParquetDataset",
    "PredictionLogDataset",
    "SyntheticTruthDataset",
]
