"""Nodes of the recommendation pipeline: data variants, Optuna search, final LightFM model,
per-user recommendations, group playlists, and evaluation beside baseline, popularity and oracle.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM
from lightfm.data import Dataset

from pozytywka.pipelines.feature_engineering.nodes import label_pairs, pairs_matrix
from pozytywka.pipelines.synthetic_data import truth

from .groups import (
    clustering_score,
    group_playlist,
    history_baseline,
    member_satisfaction,
)
from .metrics import Scorer, evaluate_ranking, top_k
from .mlflow_model import LightFMRecommender
from .model import EmbeddingScorer, fit_epochs, new_model, ordered_ids

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---- data ------------------------------------------------------------------------------------

def prepare_training_data(interactions: pd.DataFrame, dataset: Dataset, params: dict) -> dict:
    """Matrices for every training variant, a validation split carved from training pairs, and
    the held-out test likes.

    Returns ``fit`` / ``full``: ``{variant: (interactions, weights)}`` on training minus
    validation pairs / on all training pairs; ``validation`` and ``test``: held-out likes (CSR);
    ``fit_known`` / ``train_known``: every pair seen in the respective training part (never
    recommended back, and the listening histories of the baseline).
    """
    train = interactions[interactions["split"] == "train"].reset_index(drop=True)
    rng = np.random.default_rng(params["seed"])
    is_validation = rng.random(len(train)) < params["validation_size"]
    fit, validation = train[~is_validation], train[is_validation]
    test = interactions[(interactions["split"] == "test") & interactions["liked"]]

    def variants(pairs: pd.DataFrame) -> dict:
        out = {}
        for name, variant in params["variants"].items():
            labelled = label_pairs(pairs, variant)
            used = labelled[labelled["label"] != 0]
            out[name] = (pairs_matrix(used, used["label"], dataset),
                         pairs_matrix(used, used["weight"], dataset))
        return out

    def known(pairs: pd.DataFrame) -> sp.csr_matrix:
        return pairs_matrix(pairs, np.ones(len(pairs)), dataset).tocsr()

    liked_validation = validation[validation["liked"]]
    data = {
        "fit": variants(fit), "full": variants(train),
        "validation": known(liked_validation), "test": known(test),
        "fit_known": known(fit), "train_known": known(train),
        "train_liked": known(train[train["liked"]]),
    }
    logger.info("Training pairs: %d fit + %d validation (%d liked); %d test likes",
                len(fit), len(validation), len(liked_validation), len(test))
    return data


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


def oracle_scorer(user_truth: pd.DataFrame, track_truth: pd.DataFrame, truth_params: dict,
                  dataset: Dataset) -> Scorer:
    """The generator's truth as a scorer of 'will this user like this track in the log':
    log P(chosen) + log P(liked | played), up to a per-user constant.

    P(chosen) is taken as exposure x exp(choice_signal * affinity), the limit of the
    generator's pick among ``candidates_per_play`` surfaced tracks; with few candidates the
    true pick is flatter, so this ceiling is close to, not exactly, the Bayes-optimal one.
    """
    user_ids, track_ids = ordered_ids(dataset)
    missing = set(user_ids) - set(user_truth["user_id"]) | set(track_ids) - set(
        track_truth["track_id"])
    if missing:
        raise ValueError(f"the ground truth does not describe this data ({len(missing)} ids "
                         "unknown to it): was data/01_raw replaced after generation?")
    exposure = track_truth.set_index("track_id").loc[track_ids, "exposure_logit"].to_numpy()

    def scores(users: np.ndarray) -> np.ndarray:
        a = truth.affinity_matrix(user_truth, track_truth, truth_params, user_ids[users],
                                  track_ids)
        p_like = truth.like_probability_from_affinity(user_truth, truth_params,
                                                      user_ids[users], a)
        return exposure[None, :] + truth_params["choice_signal"] * a + np.log(p_like)
    return scores


# ---- comparison of training data and search --------------------------------------------------

def _objective_value(name: str, scorer: Scorer, positives: sp.csr_matrix, known: sp.csr_matrix,
                     groups: list[np.ndarray] | None = None) -> float:
    if name == "group_ndcg":
        return _group_ndcg(scorer, positives, known, groups or [])
    return evaluate_ranking(scorer, positives, known)[name]


def _group_ndcg(scorer: Scorer, positives: sp.csr_matrix, known: sp.csr_matrix,
                groups: list[np.ndarray], length: int = 20) -> float:
    values = []
    for members in groups:
        excluded = known_to_group(known, members, "all_members")
        playlist = group_playlist(scorer(members), length, "mean_rank", excluded)
        liked = [positives.indices[positives.indptr[m]:positives.indptr[m + 1]] for m in members]
        values.append(np.nanmean(member_satisfaction(playlist, liked)["ndcg"]))
    return float(np.nanmean(values)) if values else 0.0


def sample_groups(n_users: int, n_groups: int, min_size: int, max_size: int, seed: int,
                  eligible: np.ndarray | None = None) -> list[np.ndarray]:
    """Random groups of distinct users, sizes uniform in ``min_size..max_size``."""
    rng = np.random.default_rng(seed)
    pool = np.arange(n_users) if eligible is None else np.asarray(eligible)
    sizes = rng.integers(min_size, max_size + 1, n_groups)
    return [rng.choice(pool, size=min(s, len(pool)), replace=False) for s in sizes]


def compare_training_variants(data: dict, user_features: sp.csr_matrix,
                              item_features: sp.csr_matrix, params: dict) -> dict:
    """Train each training-data variant with the default hyperparameters; score on validation.

    Returns ``{"chosen": name, "objective": metric, "variants": {name: {metric: value}}}``.
    """
    hp, objective = params["defaults"], params["search"]["objective"]
    results = {}
    for name, (inter, weights) in data["fit"].items():
        t0 = time.perf_counter()
        model = fit_epochs(new_model(hp, params["seed"]), inter, weights, user_features,
                           item_features, hp["epochs"], params["num_threads"])
        scorer = EmbeddingScorer(model, user_features, item_features)
        results[name] = evaluate_ranking(scorer, data["validation"], data["fit_known"])
        results[name]["train_seconds"] = time.perf_counter() - t0
        logger.info("Variant %s: validation %s = %.4f", name, objective,
                    results[name].get(objective, float("nan")))
    metric = objective if objective != "group_ndcg" else "precision_at_10"
    chosen = max(results, key=lambda n: results[n][metric])
    return {"chosen": chosen, "objective": metric, "variants": results}


def search_hyperparameters(data: dict, comparison: dict, user_features: sp.csr_matrix,
                           item_features: sp.csr_matrix, params: dict
                           ) -> tuple[dict, pd.DataFrame, optuna.Study]:
    """Optuna TPE search with epoch-wise median pruning on the validation split.

    The study lives in ``search.storage`` (SQLite by default; any Optuna storage URL), so a
    search can resume (``search.resume``) or run from several processes at once.
    """
    search = params["search"]
    inter, weights = data["fit"][comparison["chosen"]]
    groups = sample_groups(inter.shape[0], search["group_objective_groups"], 2, 10,
                           params["seed"], _users_with(data["validation"]))
    space = search["space"]
    if search["storage"].startswith("sqlite:///"):
        Path(search["storage"].removeprefix("sqlite:///")).parent.mkdir(parents=True,
                                                                       exist_ok=True)
    if not search["resume"]:
        try:
            optuna.delete_study(study_name=search["study_name"], storage=search["storage"])
        except KeyError:
            pass
    study = optuna.create_study(
        study_name=search["study_name"], storage=search["storage"], direction="maximize",
        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=params["seed"]),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=search["pruner"]["startup_trials"],
                                           n_warmup_steps=search["pruner"]["warmup_epochs"]))

    if not study.trials:
        # The first trial is the default configuration: the search can only improve on it.
        study.enqueue_trial({k: v for k, v in params["defaults"].items()
                             if k in {*space, "epochs"}})

    def objective(trial: optuna.Trial) -> float:
        hp = {
            "learning_rate": trial.suggest_float("learning_rate", *space["learning_rate"],
                                                 log=True),
            "item_alpha": trial.suggest_float("item_alpha", *space["item_alpha"], log=True),
            "user_alpha": trial.suggest_float("user_alpha", *space["user_alpha"], log=True),
            "no_components": trial.suggest_int("no_components", *space["no_components"],
                                               log=True),
            "loss": trial.suggest_categorical("loss", space["loss"]),
        }
        epochs = trial.suggest_int("epochs", *space["epochs"])
        last = {"value": 0.0}

        def report(epoch: int, model: LightFM) -> None:
            if epoch % search["evaluate_every"] and epoch != epochs:
                return
            scorer = EmbeddingScorer(model, user_features, item_features)
            value = _objective_value(search["objective"], scorer, data["validation"],
                                     data["fit_known"], groups)
            value = value if np.isfinite(value) else 0.0
            last["value"] = value  # the value of the model as trained for `epochs`
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        model = fit_epochs(new_model(hp, params["seed"]), inter, weights, user_features,
                           item_features, epochs, params["num_threads"], report)
        scorer = EmbeddingScorer(model, user_features, item_features)
        final = evaluate_ranking(scorer, data["validation"], data["fit_known"])
        trial.set_user_attr("auc", final["auc"])
        trial.set_user_attr("precision_at_10", final["precision_at_10"])
        trial.set_user_attr("group_ndcg", _group_ndcg(scorer, data["validation"],
                                                      data["fit_known"], groups))
        return last["value"]

    study.optimize(objective, n_trials=search["n_trials"], timeout=search["timeout_seconds"],
                   catch=(ValueError, FloatingPointError))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError("no Optuna trial completed: raise search.n_trials or timeout")
    best = {**study.best_params, "objective": search["objective"],
            "validation_value": study.best_value, "variant": comparison["chosen"]}
    trials = study.trials_dataframe(attrs=("number", "value", "params", "user_attrs", "state",
                                           "duration"))
    trials["duration"] = trials["duration"].dt.total_seconds()
    logger.info("Optuna: %d trials (%d pruned), best %s = %.4f with %s", len(study.trials),
                sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
                search["objective"], study.best_value, study.best_params)
    return best, trials, study


def _users_with(matrix: sp.csr_matrix) -> np.ndarray:
    return np.flatnonzero(np.diff(matrix.indptr) > 0)


def plot_search(study: optuna.Study) -> tuple[plt.Figure, plt.Figure, plt.Figure]:
    """Optuna's own plots: optimisation history, parameter importances, slice plot."""
    from optuna.visualization import matplotlib as ovm  # noqa: PLC0415  (optional extra import)

    history = ovm.plot_optimization_history(study).figure
    slices = np.atleast_1d(ovm.plot_slice(study)).ravel()[0].figure
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) > 1:
        importance = ovm.plot_param_importances(study).figure
    else:
        importance, ax = plt.subplots()
        ax.text(0.5, 0.5, "fewer than two completed trials: no importance to estimate",
                ha="center", va="center")
        ax.set_axis_off()
    for fig in (history, slices, importance):
        fig.set_size_inches(11, 5)
    return history, importance, slices


# ---- final model -----------------------------------------------------------------------------

def train_final_model(data: dict, best: dict, user_features: sp.csr_matrix,
                      item_features: sp.csr_matrix, params: dict) -> LightFM:
    """The best hyperparameters, trained on every training pair of the chosen variant."""
    hp = {**params["defaults"], **{k: best[k] for k in best if k in params["defaults"]}}
    inter, weights = data["full"][best["variant"]]
    t0 = time.perf_counter()
    model = fit_epochs(new_model(hp, params["seed"]), inter, weights, user_features,
                       item_features, int(hp["epochs"]), params["num_threads"],
                       lambda e, _: logger.info("final model: epoch %d/%d", e, hp["epochs"]))
    logger.info("Final LightFM (%s) trained in %.1f s on %d interactions",
                best["variant"], time.perf_counter() - t0, inter.nnz)
    return model


def recommend_for_users(model: LightFM, data: dict, dataset: Dataset,
                        user_features: sp.csr_matrix, item_features: sp.csr_matrix,
                        params: dict) -> pd.DataFrame:
    """Top-k tracks per user (tracks the user already played excluded if configured)."""
    k = params["recommendations"]["k"]
    scorer = EmbeddingScorer(model, user_features, item_features)
    user_ids, track_ids = ordered_ids(dataset)
    rows = []
    for lo in range(0, len(user_ids), 1024):
        users = np.arange(lo, min(lo + 1024, len(user_ids)))
        scores = scorer(users)
        if params["recommendations"]["exclude_known"]:
            scores = np.where(data["train_known"][users].toarray() > 0, -np.inf, scores)
        top = top_k(scores, k)
        rows.append(pd.DataFrame({
            "user_id": np.repeat(user_ids[users], top.shape[1]),
            "rank": np.tile(np.arange(1, top.shape[1] + 1), len(users)),
            "track_id": track_ids[top.ravel()],
            "score": np.take_along_axis(scores, top, axis=1).ravel(),
        }))
    return pd.concat(rows, ignore_index=True)


def package_model(model: LightFM, data: dict, dataset: Dataset, user_features: sp.csr_matrix,
                  item_features: sp.csr_matrix, params: dict, feature_params: dict
                  ) -> LightFMRecommender:
    """The final model as an MLflow pyfunc model (logged to the run by the catalog); the
    serving API loads the same object."""
    user_ids, track_ids = ordered_ids(dataset)
    _, user_feature_index, _, _ = dataset.mapping()
    lightfm = feature_params["lightfm"]
    return LightFMRecommender(
        EmbeddingScorer(model, user_features, item_features), user_ids, track_ids,
        data["train_known"], params["recommendations"]["k"],
        user_feature_embeddings=model.user_embeddings.copy(),
        user_feature_biases=model.user_biases.copy(),
        user_feature_index=dict(user_feature_index),
        normalize=bool(lightfm["normalize_features"]),
        identity_features=bool(lightfm["identity_features"]))


# ---- evaluation ------------------------------------------------------------------------------

def evaluate_recommenders(model: LightFM, data: dict, dataset: Dataset,
                          user_features: sp.csr_matrix, item_features: sp.csr_matrix,
                          user_truth: pd.DataFrame, track_truth: pd.DataFrame,
                          truth_params: dict, params: dict) -> tuple[dict, pd.DataFrame]:
    """Design §4 metrics on the test split for baseline, popularity, model and oracle, and the
    group protocol for every aggregation strategy. Returns the metrics and a per-group table."""
    known, test = data["train_known"], data["test"]
    scorers: dict[str, Scorer] = {
        "baseline": history_scorer(known, params["seed"]),
        "popularity": popularity_scorer(known, data["train_liked"]),
        "model": EmbeddingScorer(model, user_features, item_features),
        "oracle": oracle_scorer(user_truth, track_truth, truth_params, dataset),
    }
    metrics = {name: evaluate_ranking(s, test, known) for name, s in scorers.items()}
    for name, values in metrics.items():
        logger.info("%-10s auc %.4f  precision@10 %.4f  ndcg@10 %.4f", name, values["auc"],
                    values["precision_at_10"], values["ndcg_at_10"])
    groups_cfg = params["groups"]
    groups = sample_groups(known.shape[0], groups_cfg["n_groups"], groups_cfg["min_size"],
                           groups_cfg["max_size"], groups_cfg["seed"])
    item_emb = scorers["model"].item_emb
    rng = np.random.default_rng(groups_cfg["seed"])
    rows = []
    for g, members in enumerate(groups):
        liked = [test.indices[test.indptr[m]:test.indptr[m + 1]] for m in members]
        histories = [known.indices[known.indptr[m]:known.indptr[m + 1]] for m in members]
        excluded = known_to_group(known, members, groups_cfg["exclude_known"])
        playlists = {("baseline", "history"): history_baseline(histories, groups_cfg["length"],
                                                               rng)}
        for scorer_name in ["popularity", "model", "oracle"]:
            member_scores = scorers[scorer_name](members)
            for strategy in groups_cfg["strategies"]:
                top = groups_cfg["gfar_top"] if strategy == "gfar" else groups_cfg["top"]
                playlists[(scorer_name, strategy)] = group_playlist(
                    member_scores, groups_cfg["length"], strategy, excluded, top)
        for (scorer_name, strategy), playlist in playlists.items():
            sat = member_satisfaction(playlist, liked)
            has_likes = np.array([len(x) > 0 for x in liked])
            # Members without held-out likes cannot be satisfied measurably: left out.
            precision, recall = sat["precision"][has_likes], sat["recall"][has_likes]
            rows.append({
                "group": g, "size": len(members), "scorer": scorer_name, "strategy": strategy,
                "clustering": clustering_score(item_emb, playlist),
                "precision_mean": float(np.mean(precision)) if len(precision) else np.nan,
                "precision_min": float(np.min(precision)) if len(precision) else np.nan,
                "recall_mean": float(np.mean(recall)) if len(recall) else np.nan,
                "recall_min": float(np.min(recall)) if len(recall) else np.nan,
                "ndcg_mean": float(np.nanmean(sat["ndcg"])) if has_likes.any() else np.nan,
                "ndcg_min": float(np.nanmin(sat["ndcg"])) if has_likes.any() else np.nan,
                "min_max_precision_ratio": (float(precision.min() / precision.max())
                                            if len(precision) and precision.max() > 0
                                            else np.nan),
                "zero_recall_share": float(np.mean(recall == 0)) if len(recall) else np.nan,
            })
    table = pd.DataFrame(rows)
    metrics["groups"] = _group_summary(table)
    return metrics, table


def known_to_group(known: sp.csr_matrix, members: np.ndarray, policy: str) -> np.ndarray | None:
    """Tracks a group playlist leaves out: those ``all_members`` (or ``any_member``) played.

    ``any_member`` would hide most of the members' held-out likes (a track one member played
    is often what another will like), so the evaluation default is ``all_members``.
    """
    if policy == "none":
        return None
    played_by = np.asarray(known[members].sum(axis=0)).ravel()
    if policy == "all_members":
        return played_by >= len(members)
    if policy == "any_member":
        return played_by > 0
    raise ValueError(f"groups.exclude_known must be none, all_members or any_member: {policy!r}")


def _group_summary(table: pd.DataFrame) -> dict:
    """``{strategy: {scorer: {metric: mean over groups}}}`` plus the clustering improvement of
    each model strategy over the history baseline."""
    cols = ["clustering", "precision_mean", "precision_min", "recall_mean", "recall_min",
            "ndcg_mean", "ndcg_min", "min_max_precision_ratio", "zero_recall_share"]
    means = table.groupby(["strategy", "scorer"])[cols].mean()
    summary: dict = {}
    for (strategy, scorer), row in means.iterrows():
        summary.setdefault(strategy, {})[scorer] = {c: float(row[c]) for c in cols}
    baseline = summary.pop("history")["baseline"]
    for by_scorer in summary.values():
        by_scorer["baseline"] = baseline
        c = by_scorer["model"]["clustering"]
        by_scorer["model"]["clustering_improvement_vs_baseline"] = (
            (baseline["clustering"] - c) / baseline["clustering"])
    return summary


# ---- reports ---------------------------------------------------------------------------------

SCORERS = ("baseline", "popularity", "model", "oracle")
HEADLINE = ("auc", "precision_at_10", "recall_at_10", "ndcg_at_10", "mrr", "coverage",
            "hit_rate_at_10", "hit_rate_at_100")
GROUP_HEADLINE = ("clustering", "precision_mean", "recall_mean", "recall_min", "ndcg_mean",
                  "ndcg_min", "min_max_precision_ratio", "zero_recall_share")


def report_recommendation(metrics: dict, comparison: dict, best: dict, trials: pd.DataFrame,
                          group_table: pd.DataFrame, params: dict
                          ) -> tuple[dict, str, dict, dict, plt.Figure, plt.Figure]:
    """The metrics file (``{scorer: {metric: value}}`` plus ``groups``), its Markdown, the search
    summary, MLflow metrics and the plots."""
    report = {s: metrics[s] for s in SCORERS}
    report["groups"] = metrics["groups"]
    oracle = metrics["oracle"]
    fraction = {m: metrics["model"][m] / oracle[m] if oracle[m] else float("nan")
                for m in HEADLINE}
    ref = params["groups"]["reference_strategy"]
    lines = [
        "# Recommendation", "",
        f"Test split: {int(metrics['model']['evaluated_users'])} users with held-out likes. "
        f"Training data: **{best['variant']}** (validation {comparison['objective']}: "
        + ", ".join(f"{n} {v[comparison['objective']]:.4f}"
                    for n, v in comparison["variants"].items()) + ").", "",
        "| metric | " + " | ".join(SCORERS) + " | model / oracle |",
        "|---|" + "---:|" * (len(SCORERS) + 1),
    ]
    lines += [f"| {m} | " + " | ".join(f"{metrics[s][m]:.4f}" for s in SCORERS)
              + f" | {fraction[m]:.1%} |" for m in HEADLINE]
    n_groups = params["groups"]["n_groups"]
    lines += ["", f"## Group playlists ({n_groups} groups of "
              f"{params['groups']['min_size']}-{params['groups']['max_size']}, "
              f"{params['groups']['length']} tracks; reference strategy: {ref})", ""]
    for strategy, by_scorer in metrics["groups"].items():
        lines += [f"### {strategy}", "", "| metric | " + " | ".join(SCORERS) + " |",
                  "|---|" + "---:|" * len(SCORERS)]
        lines += [f"| {m} | " + " | ".join(f"{by_scorer[s][m]:.4f}" for s in SCORERS) + " |"
                  for m in GROUP_HEADLINE]
        improvement = by_scorer["model"]["clustering_improvement_vs_baseline"]
        lines += ["", f"Clustering score of the model vs the baseline: {improvement:+.1%} "
                  "(positive = more coherent).", ""]
    search = {"best": best, "training_variants": comparison,
              "trials": int(len(trials)),
              "pruned": int((trials["state"] == "PRUNED").sum()) if len(trials) else 0}
    mlflow_metrics = {f"rec.{s}.{m}": {"value": float(v), "step": 0}
                      for s in SCORERS for m, v in metrics[s].items() if np.isfinite(v)}
    mlflow_metrics.update({f"rec.model_fraction_of_oracle.{m}": {"value": float(v), "step": 0}
                           for m, v in fraction.items() if np.isfinite(v)})
    mlflow_metrics.update({
        f"rec.groups.{strategy}.{s}.{m}": {"value": float(v), "step": 0}
        for strategy, by_scorer in metrics["groups"].items() for s, vals in by_scorer.items()
        for m, v in vals.items() if np.isfinite(v)})
    return (report, "\n".join(lines) + "\n", search, mlflow_metrics,
            _plot_hyperparameters(trials), _plot_group_sizes(group_table, ref))


def _plot_hyperparameters(trials: pd.DataFrame) -> plt.Figure:
    """Each searched hyperparameter against validation AUC and group NDCG, one dot per trial."""
    params = [c for c in trials.columns if c.startswith("params_")]
    targets = [("user_attrs_auc", "validation AUC"), ("user_attrs_group_ndcg", "group NDCG")]
    fig, axes = plt.subplots(len(targets), max(len(params), 1), squeeze=False,
                             figsize=(3.2 * max(len(params), 1), 6))
    done = trials[trials["state"] == "COMPLETE"]
    for i, (col, label) in enumerate(targets):
        for j, p in enumerate(params):
            ax = axes[i, j]
            if col in done and len(done):
                x = done[p]
                numeric = pd.api.types.is_numeric_dtype(x)
                ax.scatter(x if numeric else x.astype(str), done[col], s=18, alpha=0.8)
                if numeric and p.split("_", 1)[1] in {"learning_rate", "item_alpha",
                                                       "user_alpha", "no_components"}:
                    ax.set_xscale("log")
            ax.set_xlabel(p.removeprefix("params_"))
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle("Hyperparameter effects (completed Optuna trials)")
    fig.tight_layout()
    return fig


def _plot_group_sizes(table: pd.DataFrame, strategy: str) -> plt.Figure:
    """Clustering score and member NDCG against group size: model (reference strategy),
    popularity, oracle and the history baseline."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    pick = table[(table["strategy"] == strategy) | (table["scorer"] == "baseline")]
    for scorer, part in pick.groupby("scorer"):
        by_size = part.groupby("size")[["clustering", "ndcg_mean"]].mean()
        axes[0].plot(by_size.index, by_size["clustering"], marker="o", label=scorer)
        axes[1].plot(by_size.index, by_size["ndcg_mean"], marker="o", label=scorer)
    axes[0].set(xlabel="group size", ylabel="clustering score (lower = more coherent)")
    axes[1].set(xlabel="group size", ylabel="mean member NDCG@20")
    axes[0].legend()
    fig.suptitle(f"Group playlists by group size ({strategy})")
    fig.tight_layout()
    return fig
