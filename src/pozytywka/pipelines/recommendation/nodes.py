"""Nodes of the recommendation pipeline: data variants, Optuna search, final LightFM model,
per-user recommendations, group playlists, and evaluation beside the history baseline and
popularity (the oracle is oracle_evaluation's; the reports are reporting's).
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import socket
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import matplotlib
import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp
import sqlalchemy
from lightfm import LightFM
from lightfm.data import Dataset
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled
from tqdm.auto import tqdm

from pozytywka.intervals import user_bootstrap, weighted_means
from pozytywka.plotting import readable_log_ticks
from pozytywka.recsys.baselines import baseline_scorers
from pozytywka.recsys.encoding import label_pairs, pairs_matrix
from pozytywka.recsys.groups import (
    evaluate_groups,
    group_playlist,
    known_to_group,
    member_satisfaction,
    protocol_groups,
    sample_groups,
)
from pozytywka.recsys.metrics import (
    RANK_METRICS,
    Scorer,
    evaluate_ranking,
    per_user_ranking_metrics,
    rank_each,
    summarise_ranking,
    top_k,
)
from pozytywka.recsys.mlflow_model import LightFMRecommender, Ranking
from pozytywka.recsys.model import (
    DivergedError,
    EmbeddingScorer,
    fit_epochs,
    new_model,
    ordered_ids,
    threads,
)
from pozytywka.recsys.ranker import ranked_scorer
from pozytywka.tuning import is_defaults_trial, search_budget, trial_states

# The recommenders' names in the service and the choice; the evaluation tables call LightFM
# "model" (its name in every report).
EVALUATION_NAME = {"lightfm": "model"}

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Optuna marks its trial heartbeats and their retry experimental (stable since 2.8-3.0), and
# warns that heartbeats are meant for Study.optimize: _run_trial runs Optuna's own heartbeat
# thread around each trial as optimize does. Said here once rather than at every trial.
warnings.filterwarnings(
    "ignore",
    r".*(heartbeat|[Ss]tale|retry_history)",
    category=optuna.exceptions.ExperimentalWarning,
)
warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


class _SaidAlready(logging.Filter):
    """Optuna's own lines about a trial this module failed on purpose (a diverged model:
    value NaN), which it has already logged in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "failed with value nan" not in message and "value nan is not acceptable" not in (
            message
        )


for _handler in logging.getLogger("optuna").handlers:
    _handler.addFilter(_SaidAlready())


# ---- data ------------------------------------------------------------------------------------


def prepare_training_data(
    interactions: pd.DataFrame, dataset: Dataset, split: dict, evaluation: dict
) -> dict:
    """Matrices for every training variant, a validation split carved from training pairs, and
    the held-out test likes.

    Args:
        split: ``recommendation.validation``: ``seed``, ``size`` (share of training pairs
            held out), ``variants`` (training-data variants, as feature_engineering's
            ``interactions``) and ``max_users``: with more users than that, model selection
            (``fit``, ``validation``, ``fit_known``, ``fit_liked``: the variant comparison,
            the search and the baselines' grids) sees only a seeded random sample of them.
        evaluation: ``recommendation.evaluation``: ``seed`` and ``max_users`` (test users
            evaluated, at most).

    Returns ``fit`` / ``full``: ``{variant: (interactions, weights)}`` on training minus
    validation pairs / on all training pairs; ``validation`` and ``test``: held-out likes (CSR);
    ``fit_known`` / ``train_known``: every pair seen in the respective training part (never
    recommended back, and the listening histories of the baseline); ``fit_liked`` /
    ``train_liked``: the liked pairs among them; ``validation_users`` / ``test_users``: the
    rows each evaluation scores; ``sampled``: ``{"selection" | "test": {"users", "of"}}``
    where users were sampled.
    """
    train = interactions[interactions["split"] == "train"].reset_index(drop=True)
    rng = np.random.default_rng(split["seed"])
    is_validation = rng.random(len(train)) < split["size"]
    fit, validation = train[~is_validation], train[is_validation]
    test = interactions[(interactions["split"] == "test") & interactions["liked"]]
    fit, validation, sampled = _selection_sample(train, fit, validation, split)

    def known(pairs: pd.DataFrame) -> sp.csr_matrix:
        return pairs_matrix(pairs, np.ones(len(pairs)), dataset).tocsr()

    liked_validation = validation[validation["liked"]]
    data = {
        "fit": _variant_matrices(fit, split["variants"], dataset),
        "full": _variant_matrices(train, split["variants"], dataset),
        "validation": known(liked_validation),
        "test": known(test),
        "fit_known": known(fit),
        "train_known": known(train),
        "fit_liked": known(fit[fit["liked"]]),
        "train_liked": known(train[train["liked"]]),
    }
    data["validation_users"] = _users_with(data["validation"])
    data["test_users"], test_sampled = _test_users(data["test"], evaluation)
    data["sampled"] = {**sampled, **test_sampled}
    logger.info(
        "Training pairs: %d fit + %d validation (%d liked); %d test likes",
        len(fit),
        len(validation),
        len(liked_validation),
        len(test),
    )
    return data


def _selection_sample(
    train: pd.DataFrame, fit: pd.DataFrame, validation: pd.DataFrame, split: dict
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The fit and validation pairs of at most ``split.max_users`` users (a seeded sample of
    those with training pairs), and ``{"selection": {"users", "of"}}`` if that is a sample."""
    candidates = np.sort(train["user_id"].unique())
    selection = user_sample(candidates, split["max_users"], split["seed"])
    if len(selection) == len(candidates):
        return fit, validation, {}
    logger.info(
        "Model selection on a random %d of the %d users (recommendation.validation.max_users)",
        len(selection),
        len(candidates),
    )
    return (
        fit[fit["user_id"].isin(selection)],
        validation[validation["user_id"].isin(selection)],
        {"selection": {"users": len(selection), "of": len(candidates)}},
    )


def _test_users(test: sp.csr_matrix, evaluation: dict) -> tuple[np.ndarray, dict]:
    """Every user row (coverage as defined), or a seeded sample of ``evaluation.max_users``
    of those with held-out likes if there are more, with ``{"test": {"users", "of"}}``."""
    with_test = _users_with(test)
    users = user_sample(with_test, evaluation["max_users"], evaluation["seed"])
    if len(users) == len(with_test):
        return np.arange(test.shape[0]), {}
    logger.info(
        "Test evaluation on a random %d of the %d users with held-out likes "
        "(recommendation.evaluation.max_users)",
        len(users),
        len(with_test),
    )
    return users, {"test": {"users": len(users), "of": len(with_test)}}


def _variant_matrices(pairs: pd.DataFrame, variants: dict, dataset: Dataset) -> dict:
    """``{variant: (interactions, weights)}`` of ``pairs`` labelled as each variant says."""
    out = {}
    for name, variant in variants.items():
        labelled = label_pairs(pairs, variant)
        used = labelled[labelled["label"] != 0]
        out[name] = (
            pairs_matrix(used, used["label"], dataset),
            pairs_matrix(used, used["weight"], dataset),
        )
    return out


def user_sample(candidates: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    """``candidates`` (sorted), or a seeded random ``max_users`` of them, sorted, if there are
    more (``None``: no limit)."""
    if max_users is None or len(candidates) <= max_users:
        return candidates
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=max_users, replace=False))


# ---- scorers ---------------------------------------------------------------------------------


def popularity_scorer(known: sp.csr_matrix, liked: sp.spmatrix) -> Scorer:
    """Every user gets the same ranking: training likes per track, plays breaking ties."""
    score = np.asarray(liked.sum(axis=0)).ravel() + 1e-3 * np.asarray(known.sum(axis=0)).ravel()
    return lambda users: np.broadcast_to(score, (len(users), len(score)))


def history_scorer(known: sp.csr_matrix, seed: int) -> Scorer:
    """Random-from-history baseline as a ranking: the user's own tracks in random order first,
    then everything else in random order. Evaluated with known tracks excluded (as every
    scorer is), it is a random ranking of the rest: the floor."""

    def scores(users: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng([seed, int(users[0])])
        return rng.random((len(users), known.shape[1])) + known[users].toarray()

    return scores


# ---- comparison of training data and search --------------------------------------------------


def _objective_value(
    name: str,
    scorer: Scorer,
    positives: sp.csr_matrix,
    known: sp.csr_matrix,
    users: np.ndarray,
    groups: list[np.ndarray] | None = None,
) -> float:
    if name == "group_ndcg":
        return _mean_ndcg(_group_ndcgs(scorer, positives, known, groups or []))
    full_ranks = name in RANK_METRICS
    return evaluate_ranking(scorer, positives, known, full_ranks=full_ranks, users=users)[name]


def _mean_ndcg(values: np.ndarray) -> float:
    """The mean over groups that have one (0 when none has: nothing to rank by)."""
    return float(np.nanmean(values)) if np.isfinite(values).any() else 0.0


def _group_ndcgs(
    scorer: Scorer,
    positives: sp.csr_matrix,
    known: sp.csr_matrix,
    groups: list[np.ndarray],
    length: int = 20,
) -> np.ndarray:
    """Each group's mean member NDCG of its mean-rank playlist (NaN: no member has a like)."""
    values = []
    for members in groups:
        excluded = known_to_group(known, members, "all_members")
        playlist = group_playlist(scorer(members), length, "mean_rank", excluded)
        liked = [positives.indices[positives.indptr[m] : positives.indptr[m + 1]] for m in members]
        ndcg = member_satisfaction(playlist, liked)["ndcg"]
        values.append(np.nanmean(ndcg) if np.isfinite(ndcg).any() else np.nan)
    return np.array(values, dtype=float)


def _train(
    hp: dict,
    epochs: int,
    inter: sp.coo_matrix,
    weights: sp.coo_matrix,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    training: dict,
    on_epoch=None,
) -> LightFM:
    """A new LightFM model with ``hp`` trained for ``epochs`` (``on_epoch`` after each), with
    ``training``'s seed and threads."""
    model = new_model(hp, training["seed"])
    return fit_epochs(
        model,
        inter,
        weights,
        user_features,
        item_features,
        int(epochs),
        training["num_threads"],
        on_epoch,
    )


def compare_training_variants(
    data: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    training: dict,
    objective: str,
) -> dict:
    """Train each training-data variant with the default hyperparameters (at once, one per
    core); score on validation. The best is chosen only if its paired gain over the variant
    with the fewest training pairs (the cheapest to train) has a 95% interval above zero;
    otherwise that one is.

    Args:
        training: ``recommendation.training`` (``seed``, ``num_threads``, ``defaults``).
        objective: the search's validation metric; the variants are ranked by it
            (by precision@10 for ``group_ndcg``).

    Returns ``{"chosen": name, "objective": metric, "variants": {name: {metric: value}}}``
    and, where the best is not the smallest, ``gain_over_smallest``
    (``{"variant", "over", "estimate", "interval"}``).
    """
    hp = training["defaults"]

    metric = objective if objective != "group_ndcg" else "precision_at_10"

    def validate(variant: tuple[sp.coo_matrix, sp.coo_matrix]) -> tuple[dict, np.ndarray]:
        t0 = time.perf_counter()
        model = _train(hp, hp["epochs"], *variant, user_features, item_features, training)
        scorer = EmbeddingScorer(model, user_features, item_features)
        per_user, coverage = per_user_ranking_metrics(
            scorer, data["validation"], data["fit_known"], users=data["validation_users"]
        )
        summary = {
            **summarise_ranking(per_user, coverage),
            "train_seconds": time.perf_counter() - t0,
            "training_pairs": int(variant[0].nnz),
        }
        return summary, per_user[metric].to_numpy(dtype=float)

    with ThreadPoolExecutor(threads(0)) as pool:  # each fit on its own thread(s), at once
        validated = dict(zip(data["fit"], pool.map(validate, data["fit"].values()), strict=True))
    results = {name: summary for name, (summary, _) in validated.items()}
    for name, result in results.items():
        logger.info("Variant %s: validation %s = %.4f", name, metric, result[metric])
    units = {name: values for name, (_, values) in validated.items()}
    return choose_variant(results, units, metric, training["seed"])


def choose_variant(results: dict, units: dict, metric: str, seed: int) -> dict:
    """The comparison's verdict: the variant with the best validation ``metric`` if its paired
    gain over the one with the fewest ``training_pairs`` (per-user ``units``, aligned) has a
    95% interval above zero, else that smallest one."""
    best = max(results, key=lambda n: results[n][metric])
    smallest = min(results, key=lambda n: results[n]["training_pairs"])
    comparison = {"chosen": best, "objective": metric, "variants": results}
    if best != smallest:  # the larger training set only for a gain shown on validation
        gain = paired_difference(units[best], units[smallest], seed)
        comparison["gain_over_smallest"] = {"variant": best, "over": smallest, **gain}
        if not (gain["interval"][0] is not None and gain["interval"][0] > 0):
            comparison["chosen"] = smallest
            logger.info(  # a finding, not a fault
                "Variant %s is not significantly better than %s on validation (paired "
                "difference %+.4f, 95%% interval %s): %s, the smaller training set, is used",
                best,
                smallest,
                gain["estimate"],
                gain["interval"],
                smallest,
            )
    return comparison


def search_hyperparameters(
    data: dict,
    comparison: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    search: dict,
    training: dict,
    group_protocol: dict,
) -> tuple[dict, pd.DataFrame, optuna.Study]:
    """Optuna TPE search with epoch-wise pruning (``search.pruner``) on the validation split.

    Args:
        search: ``recommendation.search``: objective, budget, storage, pruner, seed, the
            space (its epochs' ceiling fitted to the chosen variant's pairs by
            ``pair_updates``: ``fitted_space``) and ``enqueue``, known-good starting points
            tried after the defaults.
        training: ``recommendation.training``; its ``defaults`` are the first trial and the
            value of every hyperparameter the space does not name.
        group_protocol: ``recommendation.groups``: the group sizes of the ``group_ndcg``
            objective's groups.

    The study lives in ``search.storage`` (SQLite by default; any Optuna storage URL), so a
    search can resume (``search.resume``: trials are added until the study holds
    ``n_trials``) or be run by several processes at once (``search_worker``, ``pozytywka
    tune``); the winner is chosen over every trial of the study, whoever ran it.
    """
    study, _ = _run_search(
        data,
        comparison,
        user_features,
        item_features,
        search,
        training,
        group_protocol,
        search["seed"],
    )
    return _search_result(study, search, comparison, data), _trials_table(study), study


def search_worker(
    data: dict,
    comparison: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    search: dict,
    training: dict,
    group_protocol: dict,
) -> dict:
    """One of several processes on the shared study (``kedro run --pipelines tune``, which
    ``pozytywka tune --workers N`` starts N times): it joins the study in ``search.storage``
    (never empties it, whatever ``search.resume`` says), adds trials until the study holds
    ``search.n_trials`` from all workers together or its own ``timeout_seconds`` pass, and
    says what it did. The sampler's seed is ``search.seed + search.worker`` (random when
    ``worker`` is null), so workers do not draw the same trials. The winner is chosen after
    the workers, over the whole study, by ``search_hyperparameters`` with ``resume: true``
    (which then runs no trial)."""
    worker = search.get("worker")
    seed = None if worker is None else search["seed"] + int(worker)
    study, ran = _run_search(
        data,
        comparison,
        user_features,
        item_features,
        {**search, "resume": True},
        training,
        group_protocol,
        seed,
    )
    trials = study.get_trials(deepcopy=False)
    summary = {
        "worker": _worker_id(),
        "trials_run": ran,
        "study_trials": len(trials),
        "study_states": trial_states(trials),
    }
    logger.info("Search worker %s: %d trials run; the study: %s", summary["worker"], ran, summary)
    return summary


def _run_search(
    data: dict,
    comparison: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    search: dict,
    training: dict,
    group_protocol: dict,
    sampler_seed: int | None,
) -> tuple[optuna.Study, int]:
    """Open (or join) the study and run this process's share of its trials, the sampler
    seeded with ``sampler_seed``, ``search.parallel_trials`` at once (threads: LightFM's fit
    releases the GIL; 0 = one per core); the study and how many trials this process ran."""
    inter, weights = data["fit"][comparison["chosen"]]
    epochs = training["defaults"].get("epochs", 0)
    space = fitted_space(search["space"], inter.nnz, search.get("pair_updates"), epochs)
    search = {**search, "space": space}
    groups = sample_groups(
        inter.shape[0],
        search["group_objective_groups"],
        group_protocol["min_size"],
        group_protocol["max_size"],
        search["seed"],
        data["validation_users"],
    )
    study = _open_study(search, sampler_seed)
    study.set_user_attr("space", search["space"])
    logger.info("Search space on %d training pairs: %s", inter.nnz, search["space"])
    n_trials = search["n_trials"]
    if data["validation"].nnz == 0:
        logger.warning(
            "The validation split holds no likes: no trial can be ranked, so only "
            "the default configuration is trained"
        )
        n_trials = 1
    deadline = time.monotonic() + search["timeout_seconds"]
    objective = _lightfm_objective(
        data, inter, weights, user_features, item_features, groups, search, training, deadline
    )
    # The first trial is the default configuration as it is (the search can only improve on
    # it), then come search.enqueue's known-good starting points, clipped into the space.
    first = [
        {k: v for k, v in training["defaults"].items() if k in search["space"]},
        *(_within(search["space"], point) for point in search.get("enqueue", [])),
    ]
    lock = functools.partial(_study_lock, search["storage"], search["study_name"])
    parallel = threads(search.get("parallel_trials", 1))
    tagged = _tagged(objective)
    with _progress(n_trials, "LightFM trials") as bar, ThreadPoolExecutor(parallel) as pool:

        def run_round(trials: list[optuna.Trial]) -> None:
            for _ in pool.map(functools.partial(_run_trial, study, objective=tagged), trials):
                bar.update()

        draw = functools.partial(_suggest, space=search["space"], defaults=training["defaults"])
        ran = _run_rounds(study, draw, lock, first, n_trials, parallel, deadline, run_round)
    return study, ran


def _within(space: dict, point: dict) -> dict:
    """The searched hyperparameters of ``point`` (a configuration), numbers clipped into
    ``space`` (an enqueued trial outside it would be told to the sampler as drawn there)."""
    out = {}
    for name, value in point.items():
        if name not in space:
            continue
        if SEARCHABLE.get(name) == "choice":
            if value not in space[name]:
                raise ValueError(f"search: {name} {value!r} is not in the space {space[name]}")
            out[name] = value
        else:
            out[name] = type(value)(np.clip(value, *space[name]))
    return out


def _run_rounds(
    study: optuna.Study,
    draw,
    lock,
    first: list[dict],
    n_trials: int,
    parallel: int,
    deadline: float,
    run_round,
) -> int:
    """Trials in rounds of ``parallel`` until the study holds ``n_trials``, from every process
    working on it, or ``deadline`` (``time.monotonic()``) passes; this process's first round
    always starts. A round's trials are created and their hyperparameters drawn here, in
    order (``draw``), before any of them runs, and the next round starts when all have ended: the
    sampler then sees the same finished trials whatever the machine's load, so a busy machine
    draws the trials a quiet one does. Each trial is created under the study's ``lock``
    (``_reserve_trial``), so N processes together run ``n_trials``, not N x ``n_trials``,
    and each of the ``first`` configurations (the defaults, then the known-good starting
    points) runs once, in order, as the study's first trials. Returns how many this process
    ran."""
    ran = 0
    while ran == 0 or time.monotonic() < deadline:
        with lock():
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, retried
            trials: list[optuna.Trial] = []
            while len(trials) < parallel and (trial := _reserve_trial(study, first, n_trials)):
                trials.append(trial)
        if not trials:
            if _may_come_back(study) and time.monotonic() < deadline:
                time.sleep(_heartbeat_interval(study))  # another worker's trial may go stale
                continue
            break
        for trial in trials:
            draw(trial)  # now, in trial order, not by racing threads
        run_round(trials)
        ran += len(trials)
    if len(study.get_trials(deepcopy=False)) < n_trials:  # time ran out before the budget
        study.set_user_attr("stopped_by_time_cap", True)
    return ran


def _reserve_trial(study: optuna.Study, first: list[dict], n_trials: int) -> optuna.Trial | None:
    """Under the study's lock: a retry of a dead worker's trial if one waits, else a new
    running trial if the study holds fewer than ``n_trials`` (the study's i-th with the
    parameters ``first[i]`` while there are such; the first marked as the defaults), else
    None. A trial failed for a lost heartbeat and retried counts once, as its retry."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
        return study.ask()  # the oldest waiting trial: a retry keeps its parameters
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    held = sum(t.number not in retried for t in trials)
    if held >= n_trials:
        return None
    if held < len(first):
        study.enqueue_trial(first[held])
    trial = study.ask()
    if held == 0:
        trial.set_user_attr("defaults", True)
    return trial


def _may_come_back(study: optuna.Study) -> bool:
    """Whether another worker's running trial may yet fail for a lost heartbeat and be
    retried: the study keeps heartbeats and holds running trials."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return bool(running) and is_heartbeat_enabled(study._storage)


def _heartbeat_interval(study: optuna.Study) -> float:
    return float(study._storage.get_heartbeat_interval() or 1)  # type: ignore[attr-defined]


def _run_trial(study: optuna.Study, trial: optuna.Trial, objective) -> None:
    """The objective on ``trial``, told to the study as ``optimize`` would: pruned, failed
    (a ``ValueError`` or ``FloatingPointError``, logged; anything else is raised) or done."""
    state = optuna.trial.TrialState
    try:
        with get_heartbeat_thread(trial._trial_id, study._storage):  # Optuna's own, as optimize
            value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=state.PRUNED)  # with its last reported value
    except (ValueError, FloatingPointError) as exc:
        logger.warning("Trial %d failed: %s", trial.number, exc)
        trial.set_user_attr("failed", str(exc))
        study.tell(trial, state=state.FAIL)
    except BaseException:
        study.tell(trial, state=state.FAIL)
        raise
    else:
        frozen = study.tell(trial, value)  # a NaN is told as a failure
        logger.info("Trial %d %s, value %s", trial.number, frozen.state.name.lower(), value)


@contextmanager
def _study_lock(storage: str, study_name: str):
    """A lock on one study across processes and machines: a PostgreSQL advisory lock (held
    by this connection; released if the process dies) for a ``postgresql`` storage, a file
    lock beside an SQLite file, none for an in-memory study (one process) or another kind
    of storage (there, N processes may together pass ``n_trials`` by up to N - 1)."""
    if storage.startswith("postgresql"):
        engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)
        key = {"key": f"pozytywka.optuna:{study_name}"}
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:key))"), key)
                try:
                    yield
                finally:
                    connection.execute(
                        sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:key))"), key
                    )
        finally:
            engine.dispose()
    elif storage.startswith("sqlite:///") and ":memory:" not in storage:
        with open(storage.removeprefix("sqlite:///") + ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
            yield
    else:
        yield


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _tagged(objective):
    """The objective, recording on each trial which process ran it (``worker``)."""

    def tagged(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", _worker_id())
        return objective(trial)

    return tagged


def _open_study(search: dict, seed: int | None) -> optuna.Study:
    """The study in ``search.storage``, emptied first unless ``search.resume``: multivariate
    TPE (the hyperparameters interact: a high learning rate wants few epochs) and a
    multi-fidelity pruner on epochs. Several processes join one study with ``resume: true``
    (``pozytywka tune`` empties it once, before its workers start)."""
    if search["storage"].startswith("sqlite:///"):
        Path(search["storage"].removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not search["resume"]:
        try:
            optuna.delete_study(study_name=search["study_name"], storage=search["storage"])
        except KeyError:
            pass
    pruner = make_pruner(search["pruner"], search["space"]["epochs"][1])
    if not isinstance(pruner, optuna.pruners.HyperbandPruner):  # TPE must see Hyperband itself
        pruner = AgainstFinishedTrials(pruner)
    return optuna.create_study(
        study_name=search["study_name"],
        storage=study_storage(search["storage"], search.get("heartbeat")),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            n_startup_trials=search["sampler"]["startup_trials"],
            constant_liar=search["sampler"]["constant_liar"],
        ),
        pruner=pruner,
    )


def study_storage(url: str, heartbeat: dict | None) -> str | optuna.storages.RDBStorage:
    """``url`` as Optuna storage: a database (SQLite, PostgreSQL...) with trial heartbeats
    when ``heartbeat`` is given (a trial silent for its grace period is failed and retried,
    ``max_retry`` times), else the URL as it is."""
    if heartbeat is None or url.startswith(("redis", "journal")) or ":memory:" in url:
        return url
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=int(heartbeat["interval_seconds"]),
        grace_period=int(heartbeat["grace_seconds"]),
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
            max_retry=heartbeat["max_retry"]
        ),
    )


class AgainstFinishedTrials(optuna.pruners.BasePruner):
    """``pruner``, deciding on a trial against the trials that had finished when it started.

    A trial running beside it reaches each checkpoint sooner or later depending on the
    machine's load; counting it would prune different trials on a busy machine than on a
    quiet one. With trials run in rounds (``_run_rounds``) the decisions are the same on both.
    """

    def __init__(self, pruner: optuna.pruners.BasePruner) -> None:
        self._pruner = pruner

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        finished = cast(optuna.Study, _FinishedBefore(study, trial.datetime_start))
        return self._pruner.prune(finished, trial)


class _FinishedBefore:
    """A study whose ``get_trials`` holds only the trials finished by ``moment``."""

    def __init__(self, study: optuna.Study, moment) -> None:
        self._study, self._moment = study, moment

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return [
            t
            for t in self._study.get_trials(deepcopy=deepcopy, states=states)
            if t.datetime_complete is not None and t.datetime_complete <= self._moment
        ]


def make_pruner(pruner: dict, max_epochs: int) -> optuna.pruners.BasePruner:
    """``pruner.kind``: ``successive_halving`` (asynchronous successive halving on epochs:
    at ``min_epochs`` x ``reduction_factor``^k only the best 1/``reduction_factor`` of the
    trials there go on), ``hyperband`` (successive halving over several brackets; Optuna's
    TPE then learns from the trial's own bracket only) or ``median`` (after
    ``warmup_epochs``, from ``startup_trials``)."""
    kind = pruner["kind"]
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner["min_epochs"], reduction_factor=pruner["reduction_factor"]
        )
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner["min_epochs"],
            max_resource=max_epochs,
            reduction_factor=pruner["reduction_factor"],
        )
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pruner["startup_trials"], n_warmup_steps=pruner["warmup_epochs"]
        )
    raise ValueError(
        f"search.pruner.kind must be successive_halving, hyperband or median, not {kind!r}"
    )


def checkpoints(search: dict, epochs: int) -> set[int]:
    """The epochs at which a trial is evaluated and may be pruned: the successive-halving
    rungs (``min_epochs`` x ``reduction_factor``^k: the only epochs at which those pruners
    decide) or every ``evaluate_every`` epochs for the median pruner, and always the last."""
    pruner = search["pruner"]
    if pruner["kind"] == "median":
        return {*range(search["evaluate_every"], epochs + 1, search["evaluate_every"]), epochs}
    rungs, rung = {epochs}, pruner["min_epochs"]
    while rung < epochs:
        rungs.add(rung)
        rung *= pruner["reduction_factor"]
    return rungs


# What the search may draw, and how: a float or an int range on a log scale (each spans
# orders of magnitude) or a list of choices. Anything not in ``search.space`` keeps its
# ``training.defaults`` value.
SEARCHABLE = {
    "learning_rate": "float",
    "item_alpha": "float",
    "user_alpha": "float",
    "no_components": "int",
    "max_sampled": "int",
    "k": "int",
    "n": "int",
    "epochs": "int",
    "loss": "choice",
}


def _suggest(trial: optuna.Trial, space: dict, defaults: dict | None = None) -> tuple[dict, int]:
    """One trial's hyperparameters (those in ``space`` drawn, in ``SEARCHABLE``'s order,
    the rest from ``defaults``) and its epochs."""
    if unknown := sorted(set(space) - set(SEARCHABLE)):
        raise ValueError(f"search.space: {unknown} cannot be searched; these can: {[*SEARCHABLE]}")
    hp = {k: v for k, v in (defaults or {}).items() if k in SEARCHABLE}
    for name in (name for name in SEARCHABLE if name in space):
        kind, bounds = SEARCHABLE[name], space[name]
        if kind == "float":
            hp[name] = trial.suggest_float(name, *bounds, log=True)
        elif kind == "int":
            hp[name] = trial.suggest_int(name, *bounds, log=True)
        else:
            hp[name] = trial.suggest_categorical(name, bounds)
    return hp, int(hp.pop("epochs"))


def fitted_space(
    space: dict, pairs: int, pair_updates: float | None, least_epochs: int = 0
) -> dict:
    """``space`` with its epochs' ceiling fitted to the data: a trial passes over the
    ``pairs`` training pairs at most ``pair_updates / pairs`` times (rounded, within the
    space's own epochs range and never below ``least_epochs``: the defaults' epochs, so the
    first trial is the defaults as they are), so a trial costs about the same on any data at
    a given rank, and small data, whose epochs are short and which needs more of them, gets
    them. ``None`` (or no epochs in the space): the space as it is."""
    if pair_updates is None or "epochs" not in space:
        return space
    low, high = space["epochs"]
    ceiling = int(np.clip(round(pair_updates / max(pairs, 1)), max(low, least_epochs), high))
    return {**space, "epochs": [low, ceiling]}


def _lightfm_objective(
    data: dict,
    inter,
    weights,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    groups: list[np.ndarray],
    search: dict,
    training: dict,
    deadline: float,
):
    """The trial function: train for the suggested epochs, report the validation objective
    at its ``checkpoints`` (where it may be pruned; never the first trial, the defaults every
    other is compared with), record AUC, precision and group NDCG as trial attributes. Past
    ``deadline`` (``time.monotonic()``) the running trial is pruned at its next epoch, so the
    search's timeout holds (and _run_rounds starts no other); only once a trial has
    completed, so there is always a model to train."""

    def objective(trial: optuna.Trial) -> float:
        hp, epochs = _suggest(trial, search["space"], training["defaults"])
        at, last = checkpoints(search, epochs), {"value": 0.0}

        def report(epoch: int, model: LightFM) -> None:
            if time.monotonic() > deadline and _has_completed(trial.study):
                trial.set_user_attr("stopped_by_time_cap", True)
                raise optuna.TrialPruned(f"search timeout reached at epoch {epoch}")
            if epoch not in at:
                return
            scorer = EmbeddingScorer(model, user_features, item_features)
            value = _objective_value(
                search["objective"],
                scorer,
                data["validation"],
                data["fit_known"],
                data["validation_users"],
                groups,
            )
            value = value if np.isfinite(value) else 0.0
            last["value"] = value  # the value of the model as trained for `epochs`
            trial.report(value, epoch)
            if not is_defaults_trial(trial) and trial.should_prune():
                raise optuna.TrialPruned()

        try:
            model = _train(
                hp, epochs, inter, weights, user_features, item_features, training, report
            )
        except DivergedError as exc:  # a failed trial, said in one line (no traceback)
            logger.warning("Trial %d failed: %s", trial.number, exc)
            trial.set_user_attr("failed", str(exc))
            return float("nan")
        scorer = EmbeddingScorer(model, user_features, item_features)
        _record_validation(trial, scorer, data, groups, search["objective"])
        return last["value"]

    return objective


def _record_validation(
    trial: optuna.Trial, scorer: Scorer, data: dict, groups: list[np.ndarray], objective: str
) -> None:
    """The trained model's validation AUC, precision@10, NDCG@10 and group NDCG as trial
    attributes, with the objective per validation user (per group): the paired comparison
    with the defaults (_paired_gain) needs it."""
    per_user, coverage = per_user_ranking_metrics(
        scorer, data["validation"], data["fit_known"], users=data["validation_users"]
    )
    final = summarise_ranking(per_user, coverage)
    group_values = _group_ndcgs(scorer, data["validation"], data["fit_known"], groups)
    for name in ("auc", "precision_at_10", "ndcg_at_10"):
        trial.set_user_attr(name, final[name])
    trial.set_user_attr("group_ndcg", _mean_ndcg(group_values))
    units = group_values if objective == "group_ndcg" else per_user[objective]
    trial.set_user_attr("validation_units", np.round(np.asarray(units, float), 6).tolist())


def _has_completed(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


@contextmanager
def _progress(total: int, description: str):
    """A tqdm bar on the terminal (none when the output is not one, e.g. in CI logs)."""
    with tqdm(total=total, desc=description, disable=not sys.stderr.isatty(), leave=False) as bar:
        yield bar


def _defaults_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The trial of the default configuration: the first, or its last retry if it was lost."""
    return [t for t in study.trials if is_defaults_trial(t)][-1]


def _search_result(study: optuna.Study, search: dict, comparison: dict, data: dict) -> dict:
    """The winner's hyperparameters, with whether it beat the defaults (the first trial).

    The best other completed trial (the challenger) replaces the defaults only if its paired
    gain over them on validation users has a 95% interval above 0; either way the gain and
    its interval are kept, so the report can say why nothing beat the defaults.
    """
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError("no Optuna trial completed: raise search.n_trials or timeout")
    defaults = _defaults_trial(study)
    others = [t for t in complete if t.number != defaults.number]
    challenger = max(others, key=lambda t: t.value or 0.0) if others else None
    chosen, gain = study.best_trial, None
    if challenger is not None and defaults.state == optuna.trial.TrialState.COMPLETE:
        gain = _paired_gain(challenger, defaults, search["seed"])
        won = gain["interval"][0] is not None and gain["interval"][0] > 0
        chosen = challenger if won else defaults
        if not won:
            _say_defaults_kept(challenger, gain, search["objective"])
    improved = chosen.number != defaults.number
    logger.info(
        "Optuna: %d trials (%d pruned), best %s = %.4f with %s",
        len(study.trials),
        sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        search["objective"],
        study.best_value,
        study.best_params,
    )
    return {
        **chosen.params,
        "objective": search["objective"],
        "validation_value": chosen.value,
        "variant": comparison["chosen"],
        "best_trial": chosen.number,
        "improved_on_defaults": bool(improved),
        "search_best": {
            "trial": challenger.number if challenger else study.best_trial.number,
            "validation_value": challenger.value if challenger else study.best_value,
            "gain_over_defaults": gain,
        },
        "validation_likes": int(data["validation"].nnz),
        "space": study.user_attrs.get("space") or search.get("space"),
        "budget": search_budget(study, search["n_trials"], search["timeout_seconds"]),
        **(
            {"selection_sampled": data["sampled"]["selection"]}
            if "selection" in data["sampled"]
            else {}
        ),
    }


def _say_defaults_kept(challenger: optuna.trial.FrozenTrial, gain: dict, objective: str) -> None:
    logger.info(  # a finding, not a fault
        "The search's best other trial, %d (%s %.4f), is not significantly better than the "
        "defaults on validation (paired difference %+.4f, 95%% interval %s): the defaults "
        "are trained",
        challenger.number,
        objective,
        challenger.value,
        gain["estimate"],
        gain["interval"],
    )


def _paired_gain(trial: optuna.trial.FrozenTrial, defaults: optuna.trial.FrozenTrial, seed: int):
    """The trial's validation objective minus the defaults', per validation user (group),
    with a 95% bootstrap interval over them: only a gain whose interval is above 0 counts."""
    a = np.asarray(trial.user_attrs.get("validation_units", []), dtype=float)
    b = np.asarray(defaults.user_attrs.get("validation_units", []), dtype=float)
    if len(a) == 0 or len(a) != len(b):
        return {
            "estimate": (trial.value or 0.0) - (defaults.value or 0.0),
            "interval": [None, None],
        }
    return paired_difference(a, b, seed)


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int) -> dict:
    """Mean of ``a - b`` over units (users, groups; NaN left out) with its 95% bootstrap
    interval over the units: ``{"estimate", "interval": [low, high]}`` (None: undefined)."""
    delta = (np.asarray(a, dtype=float) - np.asarray(b, dtype=float))[:, None]
    low, high = user_bootstrap(weighted_means(delta), len(delta), seed=seed)[0]
    finite = np.isfinite(delta)
    return {
        "estimate": float(np.nanmean(delta)) if finite.any() else 0.0,
        "interval": [_or_none(low), _or_none(high)],
    }


def _or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _trials_table(study: optuna.Study) -> pd.DataFrame:
    trials = study.trials_dataframe(
        attrs=("number", "value", "params", "user_attrs", "state", "duration")
    )
    trials["duration"] = trials["duration"].dt.total_seconds()
    # Per-user values are for the paired comparison, not for a table.
    return trials.drop(columns=["user_attrs_validation_units"], errors="ignore")


def _users_with(matrix: sp.csr_matrix) -> np.ndarray:
    return np.flatnonzero(np.diff(matrix.indptr) > 0)


def _figure_of(axes) -> Figure:
    """The figure of what Optuna's matplotlib plots return (one Axes or an array of them)."""
    return np.ravel(np.asarray(axes, dtype=object))[0].figure


def plot_search(study: optuna.Study) -> tuple[Figure, Figure, Figure]:
    """Optuna's own plots: optimisation history, parameter importances, slice plot."""
    from optuna.visualization import matplotlib as ovm  # noqa: PLC0415  (optional extra import)

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    with warnings.catch_warnings():
        # Optuna marks its matplotlib plots experimental; a hyperparameter with one value
        # tried (a tiny search) gives a zero-width axis in the slice plot.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "Attempting to set identical low and high xlims")
        history = _figure_of(ovm.plot_optimization_history(study))
        slices = _figure_of(ovm.plot_slice(study))
        importance = _figure_of(ovm.plot_param_importances(study)) if len(complete) > 1 else None
    if importance is None:
        importance, ax = plt.subplots()
        ax.text(
            0.5,
            0.5,
            "fewer than two completed trials: no importance to estimate",
            ha="center",
            va="center",
        )
        ax.set_axis_off()
    for fig in (history, slices, importance):
        fig.set_size_inches(11, 5)
    readable_log_ticks(slices, min_panel_inches=2.0)  # a panel per hyperparameter, log axes
    return history, importance, slices


# ---- final model -----------------------------------------------------------------------------


def chosen_hyperparameters(best: dict, training: dict) -> dict:
    """``training.defaults`` with the search's chosen values over them."""
    defaults = training["defaults"]
    return {**defaults, **{k: best[k] for k in best if k in defaults}}


def train_final_model(
    data: dict,
    best: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    training: dict,
) -> LightFM:
    """The best hyperparameters (over ``training.defaults``), trained on every training pair
    of the chosen variant."""
    t0 = time.perf_counter()
    model = train_chosen(data, "full", best, user_features, item_features, training, "final")
    logger.info(
        "Final LightFM (%s) trained in %.1f s on %d interactions",
        best["variant"],
        time.perf_counter() - t0,
        data["full"][best["variant"]][0].nnz,
    )
    return model


def train_chosen(
    data: dict,
    split: str,
    best: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    training: dict,
    name: str,
) -> LightFM:
    """LightFM with the search's choice over ``training.defaults``, trained on the chosen
    variant's pairs of ``data[split]`` (``full``: every training pair; ``fit``: those the
    validation likes were held out of), each epoch logged under ``name``."""
    hp = chosen_hyperparameters(best, training)
    inter, weights = data[split][best["variant"]]
    return _train(
        hp,
        hp["epochs"],
        inter,
        weights,
        user_features,
        item_features,
        training,
        lambda e, _: logger.info("%s model: epoch %d/%d", name, e, hp["epochs"]),
    )


def train_default_model(
    data: dict,
    best: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    training: dict,
) -> dict:
    """The default configuration trained as the final model is, when the search chose
    another (``{"model": LightFM}``; empty when the defaults won): on the test split it says
    whether the search paid off."""
    if not best.get("improved_on_defaults"):
        return {}
    defaults = {**best, **{k: v for k, v in training["defaults"].items()}}
    logger.info("Training the default configuration too, to compare it on the test split")
    return {"model": train_final_model(data, defaults, user_features, item_features, training)}


def train_final_models(
    data: dict,
    best: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    training: dict,
) -> tuple[LightFM, dict]:
    """``train_final_model`` and ``train_default_model`` at once (LightFM's fit releases the
    GIL, and one thread per fit is the faster use of the cores: see ``training.num_threads``)."""
    with ThreadPoolExecutor(2) as pool:
        final = pool.submit(train_final_model, data, best, user_features, item_features, training)
        default = pool.submit(
            train_default_model, data, best, user_features, item_features, training
        )
        return final.result(), default.result()


def recommend_for_users(
    recommender: LightFMRecommender, data: dict, recommendations: dict
) -> pd.DataFrame:
    """Top ``recommendations.k`` tracks per user from the served recommender, as the service
    answers (tracks the user already played excluded if ``recommendations.exclude_known``),
    with the recommender's name."""
    k = recommendations["k"]
    user_ids, track_ids = recommender.user_ids, recommender.track_ids
    rows = []
    for lo in range(0, len(user_ids), 1024):
        users = np.arange(lo, min(lo + 1024, len(user_ids)))
        scores = recommender.scores(users)
        if recommendations["exclude_known"]:
            scores = np.where(data["train_known"][users].toarray() > 0, -np.inf, scores)
        top = top_k(scores, k)
        rows.append(
            pd.DataFrame(
                {
                    "user_id": np.repeat(user_ids[users], top.shape[1]),
                    "rank": np.tile(np.arange(1, top.shape[1] + 1), len(users)),
                    "track_id": track_ids[top.ravel()],
                    "score": np.take_along_axis(scores, top, axis=1).ravel(),
                    "recommender": recommender.served,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def package_model(
    model: LightFM,
    data: dict,
    dataset: Dataset,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    recommendations: dict,
    lightfm: dict,
    rankings: dict[str, Ranking],
    choice: dict,
) -> LightFMRecommender:
    """The final model as an MLflow pyfunc model (logged to the run by the catalog); the
    serving API loads the same object.

    Args:
        recommendations: ``recommendation.recommendations`` (``k``: the default top-k).
        lightfm: ``feature_engineering.lightfm``: how feature rows were weighted, so that
            cold-start users are scored as training rows were built.
        rankings: ``served_rankings``: every other recommender's per-user head, so the
            service can answer from any of them (the A/B arms).
        choice: ``recommender_choice``: ``served`` is what the service answers from.
    """
    user_ids, track_ids = ordered_ids(dataset)
    _, user_feature_index, _, _ = dataset.mapping()
    return LightFMRecommender(
        EmbeddingScorer(model, user_features, item_features),
        user_ids,
        track_ids,
        data["train_known"],
        recommendations["k"],
        user_feature_embeddings=model.user_embeddings.copy(),
        user_feature_biases=model.user_biases.copy(),
        user_feature_index=dict(user_feature_index),
        normalize=bool(lightfm["normalize_features"]),
        identity_features=bool(lightfm["identity_features"]),
        served=choice["served"],
        rankings=rankings,
    )


# ---- evaluation ------------------------------------------------------------------------------


def evaluate_recommenders(
    model: LightFM,
    default_model: dict,
    data: dict,
    user_features: sp.csr_matrix,
    item_features: sp.csr_matrix,
    baseline_tuning: dict,
    group_protocol: dict,
    seed: int,
    baselines: dict,
    rankings: dict,
    choice: dict,
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Design §4 metrics on the held-out likes for the history baseline, popularity, the
    strong baselines (ALS, EASE: refit on every training like with their tuned
    hyperparameters) and the model, and the group protocol for every aggregation strategy.

    Args:
        default_model: ``train_default_model``'s output: scored as ``defaults`` if there.
        baseline_tuning: ``tune_baselines``' output.
        group_protocol: ``recommendation.groups`` (number, sizes, length, seed, strategies).
        seed: the random-from-history baseline's order (``recommendation.evaluation.seed``).
        baselines: ``recommendation.baselines`` (``seed`` of ALS).
        rankings: ``served_rankings``: the ranker's is scored as ``ranker`` (its head, then
            LightFM's order, as the service serves it).
        choice: ``recommender_choice``: the served recommender is named ``served`` in the
            summary (by its name here) and evaluated on group playlists too.

    Returns one row per (scorer, test user) of ranking metrics (the reporting pipeline takes
    means and bootstrap intervals over users from it), the catalogue-level figures per scorer,
    and one row per (group, scorer, strategy).
    """
    known, test = data["train_known"], data["test"]
    model_scorer = EmbeddingScorer(model, user_features, item_features)
    scorers: dict[str, Scorer] = {
        "baseline": history_scorer(known, seed),
        "popularity": popularity_scorer(known, data["train_liked"]),
        **baseline_scorers(data, baseline_tuning, baselines["seed"]),
        "model": model_scorer,
    }
    if "model" in default_model:
        scorers["defaults"] = EmbeddingScorer(default_model["model"], user_features, item_features)
    if "ranker" in rankings:
        scorers["ranker"] = ranked_scorer(rankings["ranker"], model_scorer)
    served = EVALUATION_NAME.get(choice["served"], choice["served"])
    per_user, summary = rank_each(scorers, test, known, data["test_users"])
    summary["served"] = served
    if "test" in data["sampled"]:
        summary["sampled_test_users"] = data["sampled"]["test"]
    groups = protocol_groups(known.shape[0], group_protocol)
    table = evaluate_groups(
        {k: scorers[k] for k in dict.fromkeys(("popularity", "model", served))},
        groups,
        model_scorer.item_emb,
        known,
        test,
        group_protocol,
        history_seed=group_protocol["seed"],
    )
    return per_user, summary, table
