"""Pozytywka ML: the machine-learning system of the Pozytywka music streaming service."""

import os
import sys
import warnings

# MLflow's usage telemetry is off unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false):
# its background thread imports modules while the run imports its own, and the two can
# deadlock on Python's import lock. `kedro`, `pozytywka` and the tests import this package
# before MLflow; where MLflow came first (a notebook, say), it decides again here, before a
# first record would start the thread.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
if "mlflow" in sys.modules:
    from mlflow.telemetry import set_telemetry_client

    set_telemetry_client()

# Kedro and kedro-mlflow still call omegaconf's register_new_resolver, which omegaconf 2.4
# deprecates: a warning on every run that no user of the project can act on.
warnings.filterwarnings("ignore", "register_new_resolver", UserWarning)

__version__ = "0.1.0"
