"""Start-up: the artifacts the pipelines saved, read through the project's own catalog (or
MLflow model URIs), checked, and said out loud."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kedro.config import MissingConfigException
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io.core import DatasetError
from omegaconf import OmegaConf

from .catalogue import Catalogue
from .incoming import IncomingWriter
from .prediction_log import PredictionLog
from .recommender import RecommenderEngine
from .registry import UserRegistry
from .skip import SkipEngine

logger = logging.getLogger(__name__)

API_KEY_ENV = "POZYTYWKA_API_KEY"
READ_KEY_ENV = "POZYTYWKA_READ_KEY"  # reads that are not public (/ab-summary); the write key too


# Settings newer than some conf/<env>/serving.yml files (an environment's top-level key
# replaces the base's whole section): deadlines as in conf/base, and no retention (nothing is
# deleted that the configuration does not ask to delete).
DEFAULTS = {
    "limits": {
        "body_timeout_s": 10,
        "header_timeout_s": 10,
        "keep_alive_s": 5,
        "concurrent_writes": 0,
    },
    "prediction_log": {
        "max_answer_bytes": 16384,
        "retention": {
            "max_rows": None,
            "max_age_days": None,
            "max_bytes": None,
            "max_failed_rows": None,
        },
    },
    "ab_test": {"playlists_arms": {"base": "history", "advanced": "champion"}},
    "ab_summary": {"outcome_answers": 100_000},
}

# What an arm of the playlist experiment may name besides a recommender of the loaded model.
HISTORY, CHAMPION = "history", "champion"


class StartupError(RuntimeError):
    """The service cannot start; the message says why and what to do."""


@dataclass
class ServiceState:
    recommender: RecommenderEngine
    skip: SkipEngine
    catalogue: Catalogue
    log: PredictionLog
    events: IncomingWriter
    users_writer: IncomingWriter
    config: dict
    versions: dict[str, str]
    sources: dict[str, str]
    api_key: str | None = field(repr=False, default=None)
    ab_analysis: dict = field(default_factory=dict)  # parameters_ab_analysis.yml
    read_key: str | None = field(repr=False, default=None)
    # The playlist experiment's arms: variant -> "history" or a recommender of the model
    # ("champion" resolved to the served one); from ab_test.playlists_arms.
    playlist_arms: dict[str, str] = field(default_factory=dict)

    def playlist_arm(self, variant: str) -> str:
        """What answers ``variant`` of the playlist experiment: "history" or a recommender."""
        if variant in self.playlist_arms:
            return self.playlist_arms[variant]
        return HISTORY if variant == "base" else self.recommender.served

    def summary(self) -> list[str]:
        r = self.recommender
        held = ", ".join(
            f"{name} (depth {r.rankings[name].depth})" if name in r.rankings else name
            for name in r.recommenders
        )
        return [
            f"recommender {self.versions['recommender']} from {self.sources['recommender']}: "
            f"{len(r.user_emb):,} users x {r.n_tracks:,} tracks, "
            f"{r.item_emb.shape[1]} components",
            f"served recommender: {r.served} (the model holds {held}; cold-start users are "
            "scored by LightFM)",
            "playlist A/B arms: "
            + ", ".join(f"{v} = {self.playlist_arm(v)}" for v in ("base", "advanced")),
            f"skip model {self.versions['skip']} from {self.sources['skip']}: "
            f"{len(self.skip.columns)} features, training skip share {self.skip.prior:.3f}, "
            f"predicted by {self.skip.predictor}",
            f"similar tracks: {'HNSW index' if r.index is not None else 'exact search'} "
            f"({r.n_tracks:,} tracks, HNSW from "
            f"{self.config['similar_tracks']['ann_threshold']:,})",
            f"users known: {self.catalogue.table_users:,} in the user table, "
            f"{self.catalogue.user_count() - self.catalogue.table_users:,} registered through "
            "the API (cold start for those the model lacks)",
            f"prediction log: {self.log.path} ({self.log.count():,} records)",
            f"events recorded to: {self.events.directory}",
            "write endpoints: "
            + (
                "API key configured"
                if self.api_key
                else f"DISABLED, no API key (set {API_KEY_ENV} or "
                "serving_api_key in conf/local/credentials.yml)"
            ),
            "A/B summary: "
            + (
                "behind the API key" + (" or the read key" if self.read_key else "")
                if self.api_key or self.read_key
                else f"DISABLED, no key (set {READ_KEY_ENV} or {API_KEY_ENV})"
            ),
        ]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()[:12]


def _load(catalog, name: str):
    """The catalog entry ``name``; a missing file and an unreadable one (truncated, not what
    the pipelines save) are different messages."""
    try:
        return catalog.load(name)
    except DatasetError as exc:
        cause = _root_cause(exc)
        if isinstance(cause, FileNotFoundError):
            raise StartupError(
                f"'{name}' is missing ({cause.filename}). Run `kedro run` first to train and "
                "save the models, or point conf/<env>/serving.yml models.*_uri at MLflow models."
            ) from exc
        raise StartupError(
            f"'{name}' cannot be read ({cause.__class__.__name__}: "
            f"{str(cause).splitlines()[0] if str(cause) else 'no detail'}): the file is damaged or "
            "not what the pipelines save. Rerun `kedro run` to write it again."
        ) from exc


def _open_database(path: Path, opener):
    """``opener(path)``: the prediction log or the user registry, which share the file."""
    try:
        return opener(path)
    except sqlite3.DatabaseError as exc:
        raise StartupError(
            f"the prediction log {path} is not a SQLite database ({exc}); move it aside "
            "and the service starts a new one"
        ) from exc


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def _expect(name: str, value, *attributes: str):
    """``value`` if it has what the service uses of it, else a StartupError naming it."""
    missing = [a for a in attributes if not hasattr(value, a)]
    if missing:
        raise StartupError(
            f"'{name}' holds a {type(value).__name__}, not what the pipelines save (it lacks "
            f"{', '.join(missing)}). Rerun `kedro run` to write it again."
        )
    return value


def load_service(
    project_path: str | Path = ".", env: str | None = None, overrides: dict | None = None
) -> ServiceState:
    """Everything the API needs, from the project at ``project_path`` (its catalog, parameters
    and conf/<env>/serving.yml, with ``overrides`` merged over the latter)."""
    project_path = Path(project_path).resolve()
    context = project_context(project_path, env)
    catalog, conf = context.catalog, context.config_loader
    config = cast(
        dict[str, Any],
        OmegaConf.to_container(OmegaConf.merge(DEFAULTS, conf["serving"], overrides or {})),
    )
    params = context.params
    recommender, skip_model, sources = _models(catalog, config["models"])
    _expect("recommender", recommender, "track_ids", "user_index", "scorer")
    _expect("skip_model", skip_model, "predict_proba")
    tracks = _load(catalog, "tracks")
    catalogue = Catalogue.build(
        recommender.track_ids,
        tracks,
        _load(catalog, "artists"),
        _load(catalog, "users"),
        _load(catalog, "genre_vocabulary"),
    )
    log_path = in_project(project_path, config["prediction_log"]["path"])
    users_writer = IncomingWriter(incoming_path(conf, project_path, "users"), project_path)
    catalogue.registry = _open_registry(log_path, users_writer)
    engine = RecommenderEngine(recommender, catalogue, config, params["recommendation"]["groups"])
    skip = SkipEngine(
        skip_model,
        _load(catalog, "skip_dataset"),
        tracks,
        catalogue,
        params["skip_prediction"]["scoring"],
    )
    log_conf = config["prediction_log"]
    log = _open_database(
        log_path, lambda p: PredictionLog(p, log_conf["synchronous"], log_conf["retention"])
    )
    arms = _prepared_arms(config["ab_test"], engine)
    state = ServiceState(
        engine,
        skip,
        catalogue,
        log,
        IncomingWriter(incoming_path(conf, project_path, "sessions"), project_path),
        users_writer,
        config,
        {"recommender": engine.model_version(), "skip": _skip_version(skip_model)},
        sources,
        api_key_of(conf),
        params["ab_analysis"],
        read_key_of(conf),
        arms,
    )
    for line in state.summary():
        logger.info("Serving: %s", line)
    return state


def _skip_version(skip_model) -> str:
    return f"{type(skip_model).__name__.lower()}-" + _digest(pickle.dumps(skip_model))


def _prepared_arms(ab_test: dict, engine: RecommenderEngine) -> dict[str, str]:
    """The playlist arms (``playlist_arms``), each arm's recommender ready to answer."""
    arms = playlist_arms(ab_test, engine.recommenders, engine.served)
    engine.prepare(*(arm for arm in arms.values() if arm != HISTORY))
    return arms


def playlist_arms(ab_test: dict, recommenders: tuple[str, ...], served: str) -> dict[str, str]:
    """``ab_test.playlists_arms`` checked against the loaded model: {variant: "history" or a
    recommender}, "champion" resolved to the served recommender. A recommender the model does
    not hold, or a variant other than base / advanced, cannot start."""
    arms = dict(ab_test.get("playlists_arms") or {})
    unknown = sorted(set(arms) - {"base", "advanced"})
    if unknown:
        raise StartupError(
            f"ab_test.playlists_arms in conf serving.yml names {unknown}: the playlist "
            "experiment's arms are base and advanced"
        )
    resolved = {}
    for variant, default in (("base", HISTORY), ("advanced", CHAMPION)):
        arm = str(arms.get(variant) or default)
        if arm == CHAMPION:
            arm = served
        elif arm != HISTORY and arm not in recommenders:
            raise StartupError(
                f"ab_test.playlists_arms.{variant} in conf serving.yml is {arms[variant]!r}, "
                f"which the loaded recommender model does not hold. Choose {HISTORY}, "
                f"{CHAMPION} (the served one, {served}) or one of {', '.join(recommenders)}."
            )
        resolved[variant] = arm
    return resolved


def api_key_of(conf) -> str | None:
    """The write endpoints' key: the environment variable, else conf/local/credentials.yml."""
    return os.environ.get(API_KEY_ENV) or _key(conf, "serving_api_key")


def read_key_of(conf) -> str | None:
    """The key of reads that are not public (the A/B summary), beside the write key."""
    return os.environ.get(READ_KEY_ENV) or _key(conf, "serving_read_key")


def _key(conf, name: str) -> str | None:
    """A key from credentials.yml: text, or the service does not start (a number or a list
    there would pass the start and then fail every keyed request with a 500)."""
    value = _credentials(conf).get(name)
    if value is None or isinstance(value, str):
        return value or None  # empty: no key, as without the entry
    raise StartupError(
        f"{name} in the environment's credentials.yml (conf/local for a default run) must be "
        f"text (quote it in YAML), not a {type(value).__name__}"
    )


def _credentials(conf) -> dict:
    try:
        return conf["credentials"] or {}
    except MissingConfigException:
        return {}


def _models(catalog, models: dict[str, Any]) -> tuple[Any, Any, dict[str, str]]:
    """(packaged recommender, skip model, where each came from): MLflow model URIs where
    conf serving.yml names them, else the project's catalog."""
    if models.get("recommender_uri"):
        recommender = _mlflow_recommender(models["recommender_uri"])
        rec_source = models["recommender_uri"]
    else:
        recommender = _load(catalog, "recommender")
        rec_source = "catalog: recommender (the packaged lightfm_model)"
    if models.get("skip_uri"):
        import mlflow.sklearn  # noqa: PLC0415

        try:
            skip_model = mlflow.sklearn.load_model(models["skip_uri"])
        except Exception as exc:  # MLflow raises many kinds; all mean "cannot start"
            raise StartupError(f"cannot load skip model {models['skip_uri']}: {exc}") from exc
        skip_source = models["skip_uri"]
    else:
        skip_model = _load(catalog, "skip_model")
        skip_source = "catalog: skip_model"
    return recommender, skip_model, {"recommender": rec_source, "skip": skip_source}


def project_context(project_path: Path, env: str | None):
    """The Kedro context (catalog, configuration, parameters) of the project."""
    bootstrap_project(project_path)
    with KedroSession.create(project_path=project_path, env=env) as session:
        return cast(KedroSession, session).load_context()


def in_project(project_path: Path, path: str) -> Path:
    """A configured path, relative ones taken from the project root."""
    return project_path / path if not Path(path).is_absolute() else Path(path)


def incoming_path(conf, project_path: Path, file: str) -> Path:
    """The directory of the ``incoming_{file}`` catalog entry (one source of truth for the
    service that writes and the pipeline that reads)."""
    entry = conf["catalog"]["incoming_{file}"]
    return in_project(project_path, entry["path"].replace("{file}", file))


def _open_registry(path: Path, writer: IncomingWriter) -> UserRegistry:
    """The registry of users registered through the API (in the prediction log's database),
    holding every user of the raw incoming files too: a registration the service wrote to the
    file but crashed before committing is there after the restart."""
    registry = _open_database(path, UserRegistry)
    adopted = registry.adopt(writer.read_all())
    if adopted:
        logger.info("Serving: %d registered users found only in %s", adopted, writer.directory)
    return registry


def _mlflow_recommender(uri: str):
    import mlflow.pyfunc  # noqa: PLC0415

    try:
        model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    except Exception as exc:  # MLflow raises many kinds; all mean "cannot start"
        raise StartupError(f"cannot load recommender {uri}: {exc}") from exc
    if getattr(model, "user_feature_embeddings", None) is None:
        raise StartupError(f"{uri} was logged before cold-start support; run `kedro run` again")
    return model


__all__ = ["ServiceState", "StartupError", "load_service"]
