"""Project settings (https://docs.kedro.org/en/stable/configure/configuration_basics/).

kedro-mlflow registers its hooks itself (plugin auto-registration): every `kedro run` is an
MLflow run configured by conf/base/mlflow.yml.
"""

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from pozytywka.hooks import (
    DescribeMlflowRun,
    KeepMlflowStoreInProject,
    ProtectUserRawData,
    RecordNodeTimings,
)

HOOKS = (ProtectUserRawData(), KeepMlflowStoreInProject(), DescribeMlflowRun(), RecordNodeTimings())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment such as conf/tiny overrides single nested keys, not whole blocks.
    "merge_strategy": {"parameters": "soft", "serving": "soft"},
    # conf/<env>/serving.yml: the FastAPI service (`pozytywka serve`).
    "config_patterns": {"serving": ["serving*", "serving/**"]},
    # ${oc.env:NAME,default} in any file, not only credentials: conf/cluster takes its
    # PostgreSQL and MLflow server addresses from the environment.
    "custom_resolvers": {"oc.env": oc.env},
}
