"""MLflow metrics as the catalog's ``MlflowMetricsHistoryDataset`` takes them."""

from __future__ import annotations

import math
from collections.abc import Mapping


def mlflow_metrics(values: Mapping[str, float | int | None]) -> dict[str, dict[str, float]]:
    """``{name: value}`` -> ``{name: {"value": v, "step": 0}}``, leaving out undefined values
    (None, NaN, infinite), which MLflow cannot store."""
    return {
        name: {"value": float(v), "step": 0}
        for name, v in values.items()
        if v is not None and math.isfinite(v)
    }
