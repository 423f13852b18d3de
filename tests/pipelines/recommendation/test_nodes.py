"""Recommendation nodes on the tiny catalogue: data split, search, model reload, evaluation."""

from __future__ import annotations

import contextlib
import functools
import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import optuna
import pytest
import scipy.sparse as sp
from lightfm import LightFM

from pozytywka.pipelines.recommendation.nodes import (
    AgainstFinishedTrials,
    _lightfm_objective,
    _run_rounds,
    _run_trial,
    _suggest,
    _within,
    checkpoints,
    choose_variant,
    compare_training_variants,
    evaluate_recommenders,
    fitted_space,
    make_pruner,
    package_model,
    prepare_training_data,
    recommend_for_users,
    search_hyperparameters,
    train_default_model,
    train_final_model,
    user_sample,
)
from pozytywka.pipelines.recommendation.nodes import _search_result as search_result
from pozytywka.recsys.baselines import grid_points, tune_baselines
from pozytywka.recsys.groups import known_to_group
from pozytywka.recsys.model import DivergedError, EmbeddingScorer, fit_epochs, new_model
from tests.project import load_params


@pytest.fixture(scope="module")
def rec_params(tmp_path_factory):
    params = load_params("recommendation")
    params["training"]["defaults"]["epochs"] = 3
    params["search"].update(
        n_trials=3,
        timeout_seconds=60,
        group_objective_groups=10,
        storage=f"sqlite:///{tmp_path_factory.mktemp('optuna')}/study.db",
        space={**params["search"]["space"], "epochs": [2, 4], "no_components": [8, 16]},
    )
    return params


@pytest.fixture(scope="module")
def rec_data(tiny_features, rec_params):
    interactions, inputs = tiny_features
    return prepare_training_data(
        interactions, inputs["dataset"], rec_params["validation"], rec_params["evaluation"]
    )


def test_validation_is_carved_from_training_only(rec_data):
    fit, validation = rec_data["fit_known"], rec_data["validation"]
    test, train = rec_data["test"], rec_data["train_known"]
    assert fit.multiply(validation).nnz == 0  # validation pairs are not trained on
    assert train.multiply(test).nnz == 0  # nor are test pairs, in any variant
    for inter, _ in rec_data["full"].values():
        assert inter.tocsr().multiply(test).nnz == 0
    assert validation.nnz > 0 and (validation - validation.multiply(train)).nnz == 0
    likes, weighted = rec_data["fit"]["likes"][0], rec_data["fit"]["weighted"][0]
    assert weighted.nnz > likes.nnz  # plays and skips join the likes


def test_user_sample_are_a_sorted_seeded_sample_only_past_the_limit():
    candidates = np.array([1, 4, 5, 9, 12])
    assert user_sample(candidates, None, 0) is candidates
    assert user_sample(candidates, 5, 0) is candidates
    sample = user_sample(candidates, 3, 0)
    assert len(sample) == 3 and set(sample) <= set(candidates) and (np.diff(sample) > 0).all()
    np.testing.assert_array_equal(sample, user_sample(candidates, 3, 0))


def test_model_selection_and_test_users_are_sampled_past_max_users(tiny_features, rec_params):
    interactions, inputs = tiny_features
    split, evaluation = rec_params["validation"], rec_params["evaluation"]
    everyone = prepare_training_data(interactions, inputs["dataset"], split, evaluation)
    with_test = np.flatnonzero(np.diff(everyone["test"].indptr))
    np.testing.assert_array_equal(
        everyone["validation_users"], np.flatnonzero(np.diff(everyone["validation"].indptr))
    )
    np.testing.assert_array_equal(everyone["test_users"], np.arange(everyone["test"].shape[0]))
    assert everyone["sampled"] == {}

    sampled = prepare_training_data(
        interactions,
        inputs["dataset"],
        {**split, "max_users": 10},
        {**evaluation, "max_users": 12},
    )
    rows_of = lambda m: set(np.flatnonzero(np.diff(sp.csr_matrix(m).indptr)))  # noqa: E731
    selected = rows_of(sampled["fit_known"]) | rows_of(sampled["validation"])
    assert len(selected) == 10
    for name in ("fit_liked", "validation"):
        assert rows_of(sampled[name]) <= selected
        assert (sampled[name] != everyone[name].multiply(sampled[name] > 0)).nnz == 0
    for inter, _ in sampled["fit"].values():
        assert rows_of(inter) <= selected
    assert set(sampled["validation_users"]) <= selected
    n_train_users = interactions.loc[interactions["split"] == "train", "user_id"].nunique()
    assert sampled["sampled"] == {
        "selection": {"users": 10, "of": n_train_users},
        "test": {"users": 12, "of": len(with_test)},
    }
    assert set(sampled["test_users"]) < set(with_test)
    # The final models' data and the test likes are everyone's.
    for name in ("train_known", "train_liked", "test"):
        assert (sampled[name] != everyone[name]).nnz == 0


def test_short_search_and_final_model_reload(rec_data, tiny_features, rec_params):
    _, inputs = tiny_features
    uf, itf = inputs["user_features"], inputs["item_features"]
    blind = {**rec_data, "test": None}  # the search must never look at the test likes
    p = rec_params
    comparison = compare_training_variants(blind, uf, itf, p["training"], p["search"]["objective"])
    assert comparison["chosen"] in {"likes", "weighted"}
    best, trials, study = search_hyperparameters(
        blind, comparison, uf, itf, p["search"], p["training"], p["groups"]
    )
    assert len(trials) == 3 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert {"learning_rate", "item_alpha", "no_components", "epochs"} <= set(best)
    # Trial 0 is the default configuration.
    first = trials.sort_values("number").iloc[0]
    assert first["params_learning_rate"] == p["training"]["defaults"]["learning_rate"]
    model = train_final_model(rec_data, best, uf, itf, p["training"])
    reloaded = pickle.loads(pickle.dumps(model))
    users = np.arange(5)
    np.testing.assert_allclose(
        EmbeddingScorer(model, uf, itf)(users), EmbeddingScorer(reloaded, uf, itf)(users)
    )
    lightfm = {"normalize_features": True, "identity_features": True}
    packaged = package_model(
        model,
        rec_data,
        inputs["dataset"],
        uf,
        itf,
        p["recommendations"],
        lightfm,
        {},
        {"served": "lightfm"},
    )
    recs = recommend_for_users(packaged, rec_data, p["recommendations"])
    assert set(recs["recommender"]) == {"lightfm"}
    user_map, _, item_map, _ = inputs["dataset"].mapping()
    known = rec_data["train_known"]
    rows = recs["user_id"].map(user_map).to_numpy(), recs["track_id"].map(item_map).to_numpy()
    assert not np.asarray(known[rows]).ravel().any()  # nothing the user already played
    assert recs.groupby("user_id").size().eq(rec_params["recommendations"]["k"]).all()

    tuning = tune_baselines(rec_data, p["baselines"])
    assert set(tuning) == {"als", "ease"}
    assert len(tuning["als"]["grid"]) == len(grid_points(p["baselines"]["als"]["grid"]))
    defaults = train_default_model(rec_data, best, uf, itf, p["training"])
    assert ("model" in defaults) == best["improved_on_defaults"]
    per_user, summary, groups = evaluate_recommenders(
        model,
        defaults,
        rec_data,
        uf,
        itf,
        tuning,
        p["groups"],
        p["evaluation"]["seed"],
        p["baselines"],
        {},
        {"served": "lightfm"},
    )
    expected = {"baseline", "popularity", "als", "ease", "model"} | (
        {"defaults"} if "model" in defaults else set()
    )
    assert set(per_user["scorer"]) == set(summary) - {"served"} == expected
    assert summary["served"] == "model"  # LightFM, by its name in the reports
    test_users = np.flatnonzero(np.diff(rec_data["test"].indptr))
    for scorer, rows in per_user.groupby("scorer"):
        assert sorted(rows["user"]) == test_users.tolist()  # every scorer, the same users
        assert summary[scorer]["test_interactions"] == rec_data["test"].nnz
    assert set(groups["strategy"]) == {"history", *rec_params["groups"]["strategies"]}
    assert groups["group"].nunique() == rec_params["groups"]["n_groups"]

    # A sample of the test users: every scorer on exactly those, and the summary says so.
    sample = np.sort(test_users[::3])
    sampled = {**rec_data, "test_users": sample, "sampled": {"test": {"users": 9, "of": 99}}}
    args = (tuning, p["groups"], p["evaluation"]["seed"], p["baselines"], {}, {"served": "lightfm"})
    per_user, summary, _ = evaluate_recommenders(model, {}, sampled, uf, itf, *args)
    for rows in per_user.groupby("scorer")["user"]:
        assert sorted(rows[1]) == sample.tolist()
    assert summary["sampled_test_users"] == {"users": 9, "of": 99}


@pytest.mark.parametrize(
    ("shift", "chosen"), [(0.05, "weighted"), (0.0, "likes"), (-0.05, "likes")]
)
def test_the_larger_variant_is_chosen_only_for_a_significant_validation_gain(shift, chosen):
    rng = np.random.default_rng(0)
    likes = rng.uniform(0, 0.4, 300)
    weighted = likes + shift + rng.normal(0, 0.01, 300)  # paired: the same users
    results = {
        "likes": {"ndcg_at_10": likes.mean(), "training_pairs": 100},
        "weighted": {"ndcg_at_10": weighted.mean(), "training_pairs": 400},
    }
    units = {"likes": likes, "weighted": weighted}
    comparison = choose_variant(results, units, "ndcg_at_10", seed=0)
    assert comparison["chosen"] == chosen
    best = max(results, key=lambda n: results[n]["ndcg_at_10"])
    if best == "likes":  # the smallest is also the best: nothing to test
        assert "gain_over_smallest" not in comparison
    else:
        gain = comparison["gain_over_smallest"]
        assert (gain["variant"], gain["over"]) == ("weighted", "likes")
        assert gain["estimate"] == pytest.approx((weighted - likes).mean())
        assert (gain["interval"][0] > 0) == (chosen == "weighted")


def test_group_exclusion_policies():
    known = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]))
    members = np.array([0, 1])
    assert known_to_group(known, members, "all_members").tolist() == [True, False, False, False]
    assert known_to_group(known, members, "any_member").tolist() == [True, True, True, False]
    assert known_to_group(known, members, "none") is None
    with pytest.raises(ValueError, match="exclude_known"):
        known_to_group(known, members, "some")


def _study(defaults_units: list[float], other_units: list[float]) -> optuna.Study:
    """Two finished trials, the defaults first, with their per-user validation values."""
    study = optuna.create_study(direction="maximize")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 0.2, log=True)}
    for lr, units in [(0.05, defaults_units), (0.01, other_units)]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": lr},
                distributions=dist,
                value=float(np.mean(units)),
                user_attrs={"validation_units": units},
            )
        )
    return study


@pytest.mark.parametrize(
    ("other", "chosen_lr", "improved"),
    [
        # One lucky hit among 50 users: higher mean, interval holds 0 -> the defaults stay.
        ([0.0] * 49 + [0.1], 0.05, False),
        # Better for every user: a real gain -> the search's best is trained.
        ([0.2] * 50, 0.01, True),
    ],
)
def test_the_search_replaces_the_defaults_only_by_a_significant_gain(other, chosen_lr, improved):
    study = _study([0.0] * 48 + [0.1, 0.1], other) if improved else _study([0.0] * 50, other)
    data = {"validation": sp.csr_matrix(np.ones((2, 2))), "sampled": {}}
    search = {"objective": "precision_at_10", "seed": 0, "n_trials": 2, "timeout_seconds": 60}
    best = search_result(study, search, {"chosen": "likes"}, data)
    assert best["budget"] == {
        "trials_planned": 2,
        "trials_run": 2,
        "time_cap_seconds": 60.0,
        "cut_by_time_cap": False,
    }
    assert best["learning_rate"] == chosen_lr
    assert best["improved_on_defaults"] is improved
    assert best["search_best"]["trial"] == 1
    low, high = best["search_best"]["gain_over_defaults"]["interval"]
    assert (low > 0) is improved and low <= best["search_best"]["gain_over_defaults"]["estimate"]


class _Exploding(LightFM):
    """A LightFM whose item embeddings blow up after its second epoch."""

    def fit_partial(self, *args, **kwargs):
        super().fit_partial(*args, **kwargs)
        self.epochs_done = getattr(self, "epochs_done", 0) + 1
        if self.epochs_done == 2:
            self.item_embeddings[0, 0] = 7.9e12
        return self


def test_a_diverged_model_is_refused(tiny_features):
    _, inputs = tiny_features
    seen = []
    with pytest.raises(DivergedError, match="epoch 2"):
        fit_epochs(
            _Exploding(no_components=4, random_state=0),
            inputs["train_interactions"],
            None,
            inputs["user_features"],
            inputs["item_features"],
            5,
            1,
            lambda epoch, _: seen.append(epoch),
        )
    assert seen == [1]  # the diverged epoch is never evaluated


def test_the_search_timeout_holds_once_a_trial_has_completed(rec_data, tiny_features, rec_params):
    _, inputs = tiny_features
    uf, itf = inputs["user_features"], inputs["item_features"]
    p = rec_params
    search = {**p["search"], "timeout_seconds": 0.01, "n_trials": 5, "study_name": "deadline"}
    search["parallel_trials"] = 1  # (each of N parallel ones starts its first trial)
    comparison = {"chosen": "likes"}
    best, trials, _ = search_hyperparameters(
        rec_data, comparison, uf, itf, search, p["training"], p["groups"]
    )
    states = trials.sort_values("number")["state"].tolist()
    # The defaults complete (there is always a model); the next trial is stopped at its
    # first epoch and no other starts; the result says the time cap cut the search.
    assert states[0] == "COMPLETE" and len(states) <= 2
    assert "COMPLETE" not in states[1:]
    assert best["budget"]["cut_by_time_cap"] is True
    assert best["budget"]["trials_run"] == len(states) < best["budget"]["trials_planned"] == 5


def test_a_trial_running_past_the_deadline_is_pruned_and_the_search_goes_on(
    rec_data, tiny_features, rec_params
):
    """Past the deadline a running trial stops at its next epoch as PRUNED (no exception
    escapes the search: ask/tell has no optimize loop to stop), once a trial has completed."""
    _, inputs = tiny_features
    p, inter_weights = rec_params, rec_data["fit"]["likes"]
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.1, params={}, distributions={}))
    objective = _lightfm_objective(
        rec_data,
        *inter_weights,
        inputs["user_features"],
        inputs["item_features"],
        [],
        p["search"],
        p["training"],
        deadline=time.monotonic() - 1,
    )
    stable = {"learning_rate": 0.05, "item_alpha": 1e-6, "user_alpha": 1e-6, "no_components": 8}
    study.enqueue_trial({**stable, "loss": "warp", "epochs": 3})  # a model that cannot diverge
    _run_trial(study, study.ask(), objective)
    late = study.trials[-1]
    assert late.state == optuna.trial.TrialState.PRUNED
    assert late.last_step is None  # stopped before its first evaluation


def test_parallel_trials_together_run_the_budget_once(rec_data, tiny_features, rec_params):
    _, inputs = tiny_features
    p = rec_params
    search = {**p["search"], "n_trials": 6, "parallel_trials": 3, "study_name": "parallel"}
    best, trials, _ = search_hyperparameters(
        rec_data,
        {"chosen": "likes"},
        inputs["user_features"],
        inputs["item_features"],
        search,
        p["training"],
        p["groups"],
    )
    assert sorted(trials["number"]) == list(range(6))
    assert "RUNNING" not in set(trials["state"]) and "WAITING" not in set(trials["state"])
    defaults = trials.sort_values("number").iloc[0]
    assert defaults["params_no_components"] == p["training"]["defaults"]["no_components"]


def test_trials_are_evaluated_where_their_pruner_decides():
    halving = {"pruner": {"kind": "successive_halving", "min_epochs": 2, "reduction_factor": 3}}
    assert checkpoints(halving, 30) == {2, 6, 18, 30}
    assert checkpoints(halving, 15) == {2, 6, 15}
    assert checkpoints(halving, 2) == {2}
    median = {"pruner": {"kind": "median"}, "evaluate_every": 2}
    assert checkpoints(median, 5) == {2, 4, 5}


def test_pruners_from_parameters():
    hyperband = make_pruner({"kind": "hyperband", "min_epochs": 2, "reduction_factor": 3}, 30)
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    asha = make_pruner({"kind": "successive_halving", "min_epochs": 2, "reduction_factor": 3}, 30)
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    median = make_pruner({"kind": "median", "startup_trials": 3, "warmup_epochs": 4}, 30)
    assert isinstance(median, optuna.pruners.MedianPruner)
    with pytest.raises(ValueError, match="hyperband or median"):
        make_pruner({"kind": "asha"}, 30)


def test_the_epoch_ceiling_follows_the_number_of_training_pairs():
    space = {"epochs": [5, 150], "no_components": [8, 256]}
    # A trial passes over the pairs at most pair_updates / pairs times, within the range.
    assert fitted_space(space, 120_000, 4.2e6) == {"epochs": [5, 35], "no_components": [8, 256]}
    assert fitted_space(space, 28_000, 4.2e6)["epochs"] == [5, 150]
    assert fitted_space(space, 10_000_000, 4.2e6)["epochs"] == [5, 5]
    assert fitted_space(space, 10_000_000, 4.2e6, least_epochs=15)["epochs"] == [5, 15]
    assert fitted_space(space, 120_000, None) is space


def test_a_trial_draws_what_the_space_names_and_keeps_the_defaults_elsewhere():
    defaults = {"loss": "warp", "no_components": 32, "learning_rate": 0.05, "item_alpha": 1e-6}
    defaults |= {"user_alpha": 1e-6, "max_sampled": 10, "epochs": 15}
    space = {"no_components": [8, 16], "max_sampled": [5, 50], "epochs": [2, 4]}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        hp, epochs = _suggest(trial, space, defaults)
        assert set(trial.params) == set(space)
        assert 8 <= hp["no_components"] <= 16 and 5 <= hp["max_sampled"] <= 50
        assert 2 <= epochs <= 4 and "epochs" not in hp
        assert {k: hp[k] for k in ("loss", "learning_rate", "item_alpha", "user_alpha")} == {
            k: defaults[k] for k in ("loss", "learning_rate", "item_alpha", "user_alpha")
        }
    with pytest.raises(ValueError, match="cannot be searched"):
        _suggest(study.ask(), {"rho": [0.9, 0.99]}, defaults)


def test_the_defaults_and_the_known_good_points_are_the_first_trials_within_the_space():
    space = {"learning_rate": [0.01, 0.3], "no_components": [8, 16], "loss": ["warp", "bpr"]}
    defaults = {"learning_rate": 0.05, "no_components": 12, "loss": "warp", "epochs": 15}
    point = {"learning_rate": 1.0, "no_components": 64, "loss": "bpr", "epochs": 150}
    assert _within(space, point) == {"learning_rate": 0.3, "no_components": 16, "loss": "bpr"}
    first = [_within(space, defaults), _within(space, {"learning_rate": 1.0, "loss": "bpr"})]
    assert first == [
        {"learning_rate": 0.05, "no_components": 12, "loss": "warp"},  # what the space names
        {"learning_rate": 0.3, "loss": "bpr"},
    ]
    with pytest.raises(ValueError, match="not in the space"):
        _within(space, {"loss": "warp-kos"})
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))

    def run_round(trials):
        for trial in trials:
            _run_trial(study, trial, lambda t: t.params["learning_rate"])

    draw = functools.partial(_suggest, space=space, defaults={**defaults, "epochs": 3})
    _run_rounds(study, draw, contextlib.nullcontext, first, 5, 1, time.monotonic() + 60, run_round)
    trials = study.trials
    assert trials[0].params == first[0] and len(trials) == 5
    # A point names some hyperparameters; the sampler draws the others.
    assert {k: trials[1].params[k] for k in first[1]} == first[1]
    assert set(trials[1].params) == set(space)
    assert all(t.state.name == "COMPLETE" for t in trials)


def test_k_os_learns_from_the_heaviest_pairs_and_the_model_takes_the_searched_settings(
    tiny_features,
):
    _, inputs = tiny_features
    hp = {"loss": "warp-kos", "no_components": 4, "learning_rate": 0.05, "item_alpha": 1e-6}
    hp |= {"user_alpha": 1e-6, "max_sampled": 7, "k": 3, "n": 8}
    model = new_model(hp, 0)
    assert (model.max_sampled, model.k, model.n) == (7, 3, 8)
    assert new_model({**hp, "k": 9}, 0).k == 8  # k-OS: the k-th of n, so k <= n
    inter = sp.coo_matrix(inputs["train_interactions"])
    weights = sp.coo_matrix((np.where(np.arange(inter.nnz) % 2, 1.0, 0.2), (inter.row, inter.col)))
    weights.resize(inter.shape)
    # LightFM's k-OS refuses sample weights; the fit keeps the pairs of the largest weight.
    fit_epochs(model, inter, weights, inputs["user_features"], inputs["item_features"], 2, 1)
    assert np.isfinite(model.item_embeddings).all()


def _sha() -> optuna.pruners.BasePruner:
    return AgainstFinishedTrials(optuna.pruners.SuccessiveHalvingPruner(min_resource=2))


def test_the_pruner_ignores_trials_still_running_when_a_trial_started():
    study = optuna.create_study(direction="maximize", pruner=_sha())
    first, beside = study.ask(), study.ask()  # both running
    first.report(0.9, 2)
    assert not first.should_prune()
    study.tell(first, 0.9)
    beside.report(0.1, 2)
    # Plain successive halving would prune it (0.1 is not in the best third of {0.9, 0.1});
    # the first trial finished after it started, so it does not count.
    assert not beside.should_prune()
    study.tell(beside, 0.1)
    later = study.ask()  # both have finished by now: they count
    later.report(0.1, 2)
    assert later.should_prune()


def _search_under_load(jitter_seed: int) -> list[tuple]:
    """A TPE + successive-halving search in rounds of two threads whose trials take random
    times (a machine under varying load): the trials drawn, their states and values."""
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=3, multivariate=True, n_startup_trials=4),
        pruner=_sha(),
    )
    delays = np.random.default_rng(jitter_seed)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in (2, 6, 18):
            time.sleep(float(delays.uniform(0, 0.01)))
            trial.report(x * step / 18, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    def run_round(trials):
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda t: _run_trial(study, t, objective), trials))

    draw = lambda trial: trial.suggest_float("x", 0.0, 1.0)  # noqa: E731
    _run_rounds(
        study, draw, contextlib.nullcontext, [{"x": 0.5}], 16, 2, time.monotonic() + 60, run_round
    )
    return [(t.number, t.params["x"], t.state.name, t.value) for t in study.trials]


def test_a_search_in_rounds_draws_and_prunes_the_same_trials_whatever_the_timing():
    quiet, busy = _search_under_load(0), _search_under_load(1)
    assert len(quiet) == 16
    assert quiet == busy
    assert any(state == "PRUNED" for _, _, state, _ in quiet)  # the pruner took part
