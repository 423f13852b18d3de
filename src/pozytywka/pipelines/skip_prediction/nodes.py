"""Nodes of skip_prediction: will this user skip this track?

One row per de-duplicated (session, user, track) play, labelled skipped / listened, with track
features, genre match, premium flag and user / track skip rates. Rates come from the training
period only, out of fold for training rows; validation and test rows see training rates only.
The features, rates and skip score themselves live in ``pozytywka.skip`` (shared with the
service); these nodes wire them into the dataset, the model search and the batch scorer.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import optuna
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    balanced_accuracy_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from pozytywka.skip import (
    attach_features,
    baseline_rule,
    calibrate,
    feature_columns,
    out_of_fold_rates,
    skip_score,
    smoothed_rate,
    training_counts,
    uncalibrated,
    unobserved_features,
)
from pozytywka.tuning import search_budget

logger = logging.getLogger(__name__)


# ---- dataset ---------------------------------------------------------------------------------


def split_by_time(rows: pd.DataFrame, params: dict) -> pd.Series:
    """``train`` / ``validation`` / ``test`` by time quantiles (default) or at random."""
    val, test = params["validation_size"], params["test_size"]
    if params["strategy"] == "temporal":
        t = rows["timestamp"]
        cut_val, cut_test = t.quantile(1 - val - test), t.quantile(1 - test)
        labels = np.where(t >= cut_test, "test", np.where(t >= cut_val, "validation", "train"))
    elif params["strategy"] == "random":
        u = np.random.default_rng(params["seed"]).random(len(rows))
        labels = np.where(u < test, "test", np.where(u < test + val, "validation", "train"))
    else:
        raise ValueError(f"split.strategy must be temporal or random, not {params['strategy']!r}")
    return pd.Series(
        pd.Categorical(labels, categories=["train", "validation", "test"]), index=rows.index
    )


def build_skip_dataset(
    session_tracks: pd.DataFrame,
    tracks: pd.DataFrame,
    artists: pd.DataFrame,
    users: pd.DataFrame,
    genres: list[str],
    params: dict,
    scoring: dict,
) -> pd.DataFrame:
    """The modelling table: ids, split, label ``skipped`` and every feature column.

    Args:
        params: ``skip_prediction.dataset``: ``split``, ``rate_folds`` and the ``seed`` of the
            out-of-fold assignment.
        scoring: ``skip_prediction.scoring`` (``rate_smoothing`` of the skip rates).
    """
    rows = session_tracks[["session_id", "user_id", "track_id", "timestamp", "skipped"]]
    rows = rows.reset_index(drop=True)
    rows["split"] = split_by_time(rows, params["split"])
    train = rows["split"] == "train"
    global_rate = float(rows.loc[train, "skipped"].mean())
    m = scoring["rate_smoothing"]
    fold = np.random.default_rng(params["seed"]).integers(0, params["rate_folds"], len(rows))
    rows["user_skip_rate"], rows["user_train_rows"] = out_of_fold_rates(
        rows, "user_id", train, fold, m, global_rate
    )
    rows["track_skip_rate"], rows["track_train_rows"] = out_of_fold_rates(
        rows, "track_id", train, fold, m, global_rate
    )
    rows = attach_features(rows, tracks, artists, users, genres)
    _warn_about_weak_inputs(rows)
    logger.info(
        "Skip dataset: %d rows (%s), skip share %.3f",
        len(rows),
        rows["split"].value_counts().to_dict(),
        rows["skipped"].mean(),
    )
    return rows


def _warn_about_weak_inputs(rows: pd.DataFrame) -> None:
    """Say what an export lacks that the models or the rule would need."""
    if unobserved := unobserved_features(rows):
        logger.warning(
            "Skip features with no value in the training split, left out of every model: %s",
            ", ".join(unobserved),
        )
    if not rows.loc[rows["split"] == "train", "genre_match"].any():
        logger.warning(
            "No training play matches a favourite genre (no user names one, or no track's "
            "artist has one of them): the genre rule predicts SKIP for every play"
        )


# ---- models ----------------------------------------------------------------------------------


def _linear(estimator) -> Pipeline:
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), estimator)


def _candidate(trial: optuna.trial.BaseTrial, search: dict, seed: int):
    """The skip model a trial suggests: logistic regression or histogram gradient boosting,
    from ``search.space`` (every range on a log scale)."""
    space = search["space"]
    kind = trial.suggest_categorical("model", search["models"])
    if kind == "logistic_regression":
        c = trial.suggest_float("lr_C", *space["lr_C"], log=True)
        return _linear(LogisticRegression(C=c, class_weight="balanced", max_iter=500))
    return HistGradientBoostingClassifier(
        learning_rate=trial.suggest_float(
            "hgb_learning_rate", *space["hgb_learning_rate"], log=True
        ),
        max_leaf_nodes=trial.suggest_int(
            "hgb_max_leaf_nodes", *space["hgb_max_leaf_nodes"], log=True
        ),
        min_samples_leaf=trial.suggest_int(
            "hgb_min_samples_leaf", *space["hgb_min_samples_leaf"], log=True
        ),
        l2_regularization=trial.suggest_float("hgb_l2", *space["hgb_l2"], log=True),
        max_iter=search["hgb_max_iter"],
        early_stopping=True,
        class_weight="balanced",
        random_state=seed,
    )


def train_models(
    dataset: pd.DataFrame, params: dict
) -> tuple[Pipeline, Pipeline, dict, pd.DataFrame]:
    """Reference LinearSVC, then an Optuna search over logistic regression and gradient
    boosting on the validation split; the final model is the best fit on the training period,
    its probabilities calibrated on the validation period (balanced class weights make the
    raw ones over-predict skips).

    Args:
        params: ``skip_prediction.training``: ``seed``, ``selection_metric``, ``linear_svc``,
            ``search`` (models, budget, space), ``calibration`` (``method``: sigmoid or
            isotonic, as ``CalibratedClassifierCV``).

    Returns (linear_svc, final model, selection summary, trials table).
    """
    cols = feature_columns(dataset)
    seed, metric, search = params["seed"], params["selection_metric"], params["search"]
    available = dataset[dataset["split"] == "train"]
    train = at_most(available, params["max_train_rows"], seed)
    if len(train) < len(available):
        logger.info(
            "Skip models trained on a random %d of the %d training plays "
            "(skip_prediction.training.max_train_rows)",
            len(train),
            len(available),
        )
    val = dataset[dataset["split"] == "validation"]
    svc = _linear(
        LinearSVC(class_weight="balanced", C=params["linear_svc"]["C"], random_state=seed)
    ).fit(train[cols], train["skipped"])

    def validation_value(model) -> float:
        if metric == "roc_auc":
            return roc_auc_score(val["skipped"], skip_score(model, val[cols]))
        return balanced_accuracy_score(val["skipped"], model.predict(val[cols]))

    study, best = _search(train, cols, search, seed, validation_value)
    final, calibration = _calibrated(best, val, cols, params["calibration"]["method"])
    summary = _selection_summary(study, metric, validation_value(svc), dataset)
    summary.update(
        calibration=calibration,
        training_rows=len(train),
        training_rows_available=len(available),
        budget=search_budget(study, search["n_trials"], search["timeout_seconds"]),
    )
    trials = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration"))
    trials["duration"] = trials["duration"].dt.total_seconds()
    logger.info(
        "Skip model search: best %s %.4f with %s (LinearSVC %.4f)",
        metric,
        study.best_value,
        study.best_params,
        summary["linear_svc_validation_value"],
    )
    return svc, final, summary, trials


def at_most(rows: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """``rows`` itself, or a seeded random sample of ``max_rows`` of them if there are more
    (``None``: no limit)."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    return rows.sample(max_rows, random_state=seed)


def _search(train: pd.DataFrame, cols: list[str], search: dict, seed: int, validation_value):
    """The Optuna study over ``_candidate`` models (``search.first_trials`` first) and the best
    model it fitted, kept rather than fitted again."""
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True)
    )
    for first in search.get("first_trials", []):  # known-good starting points
        if first["model"] in search["models"]:
            study.enqueue_trial(first)
    best: dict = {}

    def objective(trial: optuna.Trial) -> float:
        model = _candidate(trial, search, seed).fit(train[cols], train["skipped"])
        value = validation_value(model)
        if not best or value > best["value"]:
            best.update(value=value, model=model)
        return value

    # The budget is the trial count; the time cap only guards against a runaway search.
    study.optimize(
        objective,
        n_trials=search["n_trials"],
        callbacks=[stop_before_overrun(search["timeout_seconds"])],
    )
    return study, best["model"]


def _calibrated(model, val: pd.DataFrame, cols: list[str], method: str):
    """The model calibrated on the validation period, and how; uncalibrated (said in the log
    and the report) when that period holds one class only, as a small export's may."""
    if val["skipped"].nunique() < 2:
        reason = "none: the validation period holds one class only"
        logger.warning("Skip model not calibrated (%s); its raw probabilities are served", reason)
        return model, reason
    return calibrate(model, val[cols], val["skipped"], method), method


def stop_before_overrun(timeout_seconds: float):
    """An Optuna callback that stops the study when the next trial, if it takes as long as
    the longest so far, would end past ``timeout_seconds`` (Optuna's own timeout only stops
    starting trials, so one long trial overruns it)."""
    start = time.monotonic()

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        longest = max(
            (t.duration.total_seconds() for t in study.trials if t.duration is not None),
            default=0.0,
        )
        if time.monotonic() - start + longest > timeout_seconds:
            logger.warning(
                "Skip search stopped after %d trials: another would pass its %.0f s time cap "
                "(the model chosen may differ from a run on a less busy machine)",
                len(study.trials),
                timeout_seconds,
            )
            study.set_user_attr("stopped_by_time_cap", True)
            study.stop()

    return callback


def _selection_summary(
    study: optuna.Study, metric: str, svc_value: float, dataset: pd.DataFrame
) -> dict:
    """What the search chose, beside the LinearSVC reference, and what the data lacked."""
    if study.best_value <= svc_value:
        logger.warning(
            "The skip search found nothing better than the LinearSVC reference on validation "
            "(%s %.4f vs %.4f); its best is still the final model",
            metric,
            study.best_value,
            svc_value,
        )
    train = dataset[dataset["split"] == "train"]
    return {
        "selection_metric": metric,
        "best_params": study.best_params,
        "validation_value": study.best_value,
        "linear_svc_validation_value": svc_value,
        "beats_linear_svc_on_validation": bool(study.best_value > svc_value),
        "unobserved_features": unobserved_features(dataset),
        "genre_rule_constant": bool(not train["genre_match"].any()),
    }


# ---- evaluation ------------------------------------------------------------------------------


def evaluate_skip_models(
    dataset: pd.DataFrame, svc: Pipeline, final: Pipeline, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions of the genre rule, LinearSVC and the final model on the test split (the
    reporting pipeline computes metrics and intervals from them), and the permutation
    importance of the final model (``params``: ``skip_prediction.importance``)."""
    cols = feature_columns(dataset)
    test = dataset[dataset["split"] == "test"]
    raw = uncalibrated(final)
    predictions = pd.DataFrame(
        {
            "user_id": test["user_id"].to_numpy(),
            "track_id": test["track_id"].to_numpy(),
            "skipped": test["skipped"].to_numpy(dtype=bool),
            "baseline_predicted": baseline_rule(test),
            "linear_svc_score": skip_score(svc, test[cols]),
            "linear_svc_predicted": svc.predict(test[cols]).astype(bool),
            "final_score": skip_score(final, test[cols]),
            "final_predicted": final.predict(test[cols]).astype(bool),
            "final_uncalibrated_score": skip_score(raw, test[cols]),
            "final_uncalibrated_predicted": raw.predict(test[cols]).astype(bool),
        }
    )
    return predictions, _permutation_importance(final, test, cols, params)


def _permutation_importance(
    model, test: pd.DataFrame, cols: list[str], params: dict
) -> pd.DataFrame:
    """ROC AUC drop when each feature is shuffled (a sample of the test split); empty, with
    the reason logged, when the sample holds one class only."""
    sample = at_most(test, params["max_rows"], params["seed"])
    columns = ["feature", "importance_mean", "importance_std"]
    if sample["skipped"].nunique() < 2:
        logger.warning("Permutation importance skipped: the test sample holds one class only")
        return pd.DataFrame(columns=columns)
    imp = permutation_importance(
        model,
        sample[cols],
        sample["skipped"],
        scoring="roc_auc",
        n_repeats=params["repeats"],
        random_state=params["seed"],
        n_jobs=1,
    )
    return (
        pd.DataFrame(
            {
                "feature": cols,
                "importance_mean": imp.importances_mean,
                "importance_std": imp.importances_std,
            }
        )
        .sort_values("importance_mean", ascending=False)
        .reset_index(drop=True)
    )


# ---- batch scoring ---------------------------------------------------------------------------


def score_pairs(
    pairs: pd.DataFrame,
    model,
    dataset: pd.DataFrame,
    tracks: pd.DataFrame,
    artists: pd.DataFrame,
    users: pd.DataFrame,
    genres: list[str],
    scoring: dict,
) -> tuple[pd.DataFrame, dict]:
    """Skip probability for (user_id, track_id) pairs, reusing the training-period rates
    (smoothed by ``scoring.rate_smoothing``; SKIP from ``scoring.threshold``).

    Unknown users or tracks get the defined fallback: the training skip share as the
    probability (``fallback`` column says why); they are counted, never dropped.
    """
    known_users = pairs["user_id"].isin(users["user_id"]).to_numpy()
    known_tracks = pairs["track_id"].isin(tracks["track_id"]).to_numpy()
    train = dataset[dataset["split"] == "train"]
    prior = float(train["skipped"].mean())
    ok = known_users & known_tracks
    out = pairs[["user_id", "track_id"]].reset_index(drop=True).copy()
    out["skip_probability"] = prior
    out["fallback"] = np.where(ok, "", np.where(~known_users, "unknown_user", "unknown_track"))
    if ok.any():
        rows = out[ok].copy()
        m = scoring["rate_smoothing"]
        for key in ["user_id", "track_id"]:
            skips, count = training_counts(train, key, rows[key])
            prefix = key.split("_")[0]
            rows[f"{prefix}_skip_rate"] = smoothed_rate(skips, count, m, prior)
            rows[f"{prefix}_train_rows"] = count
        rows = attach_features(rows.reset_index(drop=True), tracks, artists, users, genres)
        cols = feature_columns(dataset)
        out.loc[ok, "skip_probability"] = skip_score(model, rows[cols]).astype(float)
    counts = {
        "pairs": len(out),
        "scored": int(ok.sum()),
        "unknown_user": int((~known_users).sum()),
        "unknown_track": int((known_users & ~known_tracks).sum()),
    }
    out["prediction"] = np.where(out["skip_probability"] >= scoring["threshold"], "SKIP", "PLAY")
    logger.info("Batch scoring: %s", counts)
    return out, counts


def sample_pairs_to_score(dataset: pd.DataFrame, batch_params: dict) -> pd.DataFrame:
    """A demonstration batch (``skip_prediction.batch``: ``size``, ``seed``): test pairs plus
    an unknown user and an unknown track."""
    test = dataset[dataset["split"] == "test"][["user_id", "track_id"]]
    batch = test.sample(min(len(test), batch_params["size"]), random_state=batch_params["seed"])
    extra = pd.DataFrame(
        {
            "user_id": [-1, int(test["user_id"].iloc[0])],
            "track_id": [str(test["track_id"].iloc[0]), "0" * 22],
        }
    )
    return pd.concat([batch, extra], ignore_index=True)
