"""Pozytywka ML: the machine-learning system of the Pozytywka music streaming service."""

import os

# MLflow's usage telemetry is off unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false):
# its background thread imports modules while the run imports its own, and the two can
# deadlock on Python's import lock. This runs before MLflow is imported: Kedro imports the
# project's settings (this package) before its plugins, and so do the CLI and the tests.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
