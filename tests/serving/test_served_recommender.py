"""The service answers from the recommender the training run chose (``served``), and the
playlist experiment's arms can be any two recommenders the model holds.

The trained tiny project's LightFM is repackaged with a made-up "ease" ranking (each user's
head is among the tracks LightFM likes least, scored far below LightFM's scale, so neither
LightFM's order nor unshifted scores can pass for it) and its own track vectors, served as
"ease"; what every route should answer is worked out here from LightFM's scorer alone."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from pozytywka.recsys.groups import group_playlist, known_to_group
from pozytywka.recsys.mlflow_model import LightFMRecommender, Ranking, ranked_scores
from pozytywka.serving.app import assign_variant, create_app
from pozytywka.serving.loading import StartupError, load_service, playlist_arms
from pozytywka.serving.prediction_log import ab_summary
from pozytywka.serving.recommender import Member, RecommenderEngine, _merged_heads
from pozytywka.serving.routers.playlists import baseline_rng
from tests.project import API_KEY, copy_project

DEPTH = 8
PADDED = 3  # the second model user's head has this many fewer tracks (padding: -1, -inf)
ARMS = {"ab_test": {"playlists_arms": {"base": "lightfm", "advanced": "champion"}}}
STRATEGIES = ("mean_rank", "least_misery", "borda", "gfar")


# ---- pure parts: no project ----------------------------------------------------------------


def test_ranked_scores_put_the_head_first_then_the_fallback_order():
    fallback = np.array([[5.0, 1.0, 3.0, 2.0, 4.0], [0.5, 0.1, 0.4, 0.3, 0.2]])
    ranking = Ranking(
        positions=np.array([[1, 3], [2, -1]], dtype=np.int32),
        scores=np.array([[-7.0, -9.0], [10.0, -np.inf]], dtype=np.float32),
    )
    scores = ranked_scores(ranking, np.array([0, 1]), fallback)
    assert list(np.argsort(-scores[0], kind="stable")) == [1, 3, 0, 4, 2]
    assert list(np.argsort(-scores[1], kind="stable")) == [2, 0, 3, 4, 1]
    assert scores[0, 1] == -7.0 and scores[0, 3] == -9.0  # the head keeps its own scores
    assert scores[0, [0, 2, 4]].max() < -9.0  # the rest strictly below the head's lowest
    np.testing.assert_allclose(np.diff(scores[0, [0, 4, 2]]), [-1.0, -1.0])  # LightFM's gaps
    # Rows taken by index, a row without a head keeps the fallback's order.
    empty = Ranking(np.full((2, 2), -1, np.int32), np.full((2, 2), -np.inf, np.float32))
    kept = ranked_scores(empty, np.array([1]), fallback[1:])
    assert list(np.argsort(-kept[0])) == list(np.argsort(-fallback[1]))


def test_merged_heads_are_the_ranking_then_lightfms_best_outside_it():
    lightfm = np.array([[0, 1, 2, 3], [4, 3, 2, 1]], dtype=np.int32)
    ranking = Ranking(
        positions=np.array([[1, 5, -1], [6, 3, -1]], dtype=np.int32),
        scores=np.array([[3, 2, -np.inf], [1, 0, -np.inf]], dtype=np.float32),
    )
    merged = _merged_heads(ranking, lightfm, n_tracks=8, batch=1)
    assert merged.tolist() == [[1, 5, 0, 2], [6, 3, 4, 2]]


def test_playlist_arms_resolve_champion_and_refuse_what_the_model_lacks():
    held = ("lightfm", "ease")
    assert playlist_arms({}, held, "ease") == {"base": "history", "advanced": "ease"}
    assert playlist_arms(
        {"playlists_arms": {"base": "lightfm", "advanced": "champion"}}, held, "ease"
    ) == {"base": "lightfm", "advanced": "ease"}
    assert playlist_arms({"playlists_arms": {"base": "ease"}}, held, "lightfm") == {
        "base": "ease",
        "advanced": "lightfm",
    }
    with pytest.raises(StartupError, match=r"playlists_arms.advanced .* 'als'.* lightfm, ease"):
        playlist_arms({"playlists_arms": {"advanced": "als"}}, held, "ease")
    with pytest.raises(StartupError, match="base and advanced"):
        playlist_arms({"playlists_arms": {"control": "history"}}, held, "ease")


def test_the_model_refuses_a_served_recommender_it_does_not_hold():
    known = sp.csr_matrix((2, 3))
    ranking = Ranking(np.zeros((2, 1), np.int32), np.zeros((2, 1), np.float32))
    args = (None, np.array([1, 2]), np.array(["a", "b", "c"]), known, 2)
    with pytest.raises(ValueError, match="served recommender 'als'"):
        LightFMRecommender(*args, served="als", rankings={"ease": ranking})
    with pytest.raises(ValueError, match="1 rows for 2 users"):
        short = Ranking(np.zeros((1, 1), np.int32), np.zeros((1, 1), np.float32))
        LightFMRecommender(*args, served="ease", rankings={"ease": short})
    with pytest.raises(ValueError, match="one row per track"):
        LightFMRecommender(*args, item_vectors={"ease": np.zeros((2, 4))})


# ---- the service on the trained tiny project -------------------------------------------------


def _lightfm_only(model: LightFMRecommender, **extra) -> LightFMRecommender:
    """The packaged model's LightFM parts, with ``extra`` (served, rankings, item_vectors)."""
    return LightFMRecommender(
        model.scorer,
        model.user_ids,
        model.track_ids,
        model.known,
        model.k,
        model.user_feature_embeddings,
        model.user_feature_biases,
        model.user_feature_index,
        model.normalize,
        model.identity_features,
        **extra,
    )


def _ease_ranking(model: LightFMRecommender) -> Ranking:
    """Each user's DEPTH unplayed tracks that LightFM likes least over all users (shared
    across users, so that a group's playlist changes too), worst first, scored -100, -101,
    ... (far below any LightFM score); the second user's row is padded."""
    n_users = len(model.user_ids)
    scores = model.scorer(np.arange(n_users))
    worst = np.argsort(scores.mean(axis=0), kind="stable")
    played = model.known.toarray() > 0
    positions = np.stack([worst[~played[row, worst]][:DEPTH] for row in range(n_users)])
    positions = positions.astype(np.int32)
    head = np.tile(-100.0 - np.arange(DEPTH, dtype=np.float32), (n_users, 1))
    positions[1, -PADDED:], head[1, -PADDED:] = -1, -np.inf
    return Ranking(positions=positions, scores=head)


@pytest.fixture(scope="module")
def ease_model(trained_project) -> LightFMRecommender:
    with open(trained_project / "data" / "06_models" / "recommender.pkl", "rb") as f:
        trained = pickle.load(f)
    vectors = np.random.default_rng(7).standard_normal((len(trained.track_ids), 6))
    return _lightfm_only(
        trained,
        served="ease",
        rankings={"ease": _ease_ranking(trained)},
        item_vectors={"ease": vectors.astype(np.float32)},
    )


def _project_with(trained_project, target, model) -> object:
    project = copy_project(trained_project, target)
    (project / "data" / "06_models" / "recommender.pkl").write_bytes(pickle.dumps(model))
    return project


@pytest.fixture(scope="module")
def ease_state(trained_project, tmp_path_factory, ease_model):
    project = _project_with(trained_project, tmp_path_factory.mktemp("ease") / "p", ease_model)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POZYTYWKA_API_KEY", API_KEY)
        return load_service(project, "tiny", overrides=ARMS)


@pytest.fixture(scope="module")
def ease_client(ease_state):
    with TestClient(create_app(ease_state)) as c:
        yield c


def _order(model: LightFMRecommender, row: int) -> np.ndarray:
    """Every track of model row ``row`` under "ease", best first, worked out by hand: the
    ranking's head, then the other tracks in LightFM's order."""
    ranking = model.rankings["ease"]
    head = ranking.positions[row][ranking.positions[row] >= 0]
    lightfm = np.argsort(-model.scorer(np.array([row]))[0], kind="stable")
    return np.concatenate([head, lightfm[~np.isin(lightfm, head)]])


def _rank_scores(model: LightFMRecommender, rows) -> np.ndarray:
    """Scores that order each row as ``_order`` does (-position)."""
    out = np.empty((len(rows), len(model.track_ids)))
    for i, row in enumerate(rows):
        out[i, _order(model, row)] = -np.arange(len(model.track_ids))
    return out


def _users(model: LightFMRecommender, n: int) -> list[int]:
    """Model users with a history, the padded second one included."""
    rows = [1] + [r for r in range(len(model.user_ids)) if model.known[r].nnz and r != 1]
    return [int(model.user_ids[r]) for r in rows[:n]]


def _expected_playlist(state, model, user_ids, n, strategy, recommender) -> list[str]:
    rows = np.array([model.user_index[u] for u in user_ids])
    scores = model.scorer(rows) if recommender == "lightfm" else _rank_scores(model, rows.tolist())
    excluded = known_to_group(model.known, rows, "all_members")
    params = state.recommender.group_params
    top = params["gfar_top"] if strategy == "gfar" else params["top"]
    return list(model.track_ids[group_playlist(scores, n, strategy, excluded, top)])


@pytest.mark.slow
def test_health_names_the_served_recommender_and_those_the_model_holds(ease_client, ease_state):
    health = ease_client.get("/health").json()
    digest = ease_state.recommender.digest
    assert health["served_recommender"] == "ease"
    assert health["recommenders"] == {"lightfm": f"lightfm-{digest}", "ease": f"ease-{digest}"}
    assert health["models"]["recommender"] == f"ease-{digest}"
    assert health["playlist_arms"] == {"base": "lightfm", "advanced": "ease"}
    summary = "\n".join(ease_state.summary())
    assert "served recommender: ease" in summary and "base = lightfm, advanced = ease" in summary


@pytest.mark.slow
def test_recommendations_are_the_rankings_head_then_lightfms_order(ease_client, ease_model):
    model = ease_model
    for user in _users(model, 3):
        row = model.user_index[user]
        known = set(model.known[row].indices)
        order = [t for t in _order(model, row) if t not in known]
        answer = ease_client.post("/recommendations", json={"user_id": user, "k": DEPTH + 5})
        body = answer.json()
        assert answer.status_code == 200 and not body["cold_start"]
        assert body["model_version"].startswith("ease-")
        got = [t["track_id"] for t in body["tracks"]]
        assert got == list(model.track_ids[order[: DEPTH + 5]])
        n_head = DEPTH - (PADDED if row == 1 else 0)
        head_scores = model.rankings["ease"].scores[row][:n_head]
        scores = [t["score"] for t in body["tracks"]]
        np.testing.assert_allclose(scores[:n_head], head_scores)
        assert max(scores[n_head:]) < head_scores[-1]  # LightFM's part, shifted below
        # LightFM's own best unplayed track is not first: the ranking answers.
        assert got[0] != model.track_ids[order[n_head]]


@pytest.mark.slow
def test_rerank_follows_the_served_rows(ease_client, ease_model):
    model = ease_model
    user = _users(model, 2)[1]
    row = model.user_index[user]
    head = list(model.rankings["ease"].positions[row][:4])
    others = [int(t) for t in np.argsort(-model.scorer(np.array([row]))[0])[:6]]
    given = [others[3], head[2], others[0], head[0], others[5], head[3], head[1]]
    answer = ease_client.post(
        "/rerank", json={"user_id": user, "track_ids": list(model.track_ids[given])}
    ).json()
    assert answer["model_version"].startswith("ease-")
    expected = head + [others[0], others[3], others[5]]  # the head's order, then LightFM's
    assert [t["track_id"] for t in answer["tracks"]] == list(model.track_ids[expected])


@pytest.mark.slow
def test_similar_tracks_come_from_the_served_recommenders_vectors(ease_client, ease_model):
    vectors = ease_model.item_vectors["ease"]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    position = 5
    sims = unit @ unit[position]
    sims[position] = -np.inf
    expected = np.argsort(-sims, kind="stable")[:7]
    answer = ease_client.post(
        "/similar-tracks", json={"track_id": str(ease_model.track_ids[position]), "k": 7}
    ).json()
    assert answer["model_version"].startswith("ease-")
    assert [t["track_id"] for t in answer["tracks"]] == list(ease_model.track_ids[expected])
    np.testing.assert_allclose([t["score"] for t in answer["tracks"]], sims[expected], atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.slow
def test_forced_arms_answer_from_their_recommenders(ease_client, ease_state, ease_model, strategy):
    users = _users(ease_model, 4)
    body = {"user_id": users[0], "other_users": users[1:], "playlist_length": 12}
    for route, recommender in (("/playlists/advanced", "ease"), ("/playlists/base", "lightfm")):
        answer = ease_client.post(route, json={**body, "strategy": strategy}).json()
        assert answer["model_version"] == f"{recommender}-{ease_state.recommender.digest}"
        expected = _expected_playlist(ease_state, ease_model, users, 12, strategy, recommender)
        assert [t["track_id"] for t in answer["tracks"]] == expected, (route, strategy)
        row = ease_state.log.frame().iloc[-1]
        assert (row["endpoint"], row["variant"], row["forced"]) == (route, route[11:], 1)
        assert row["model_version"] == answer["model_version"]
    a = ease_client.post("/playlists/advanced", json={**body, "strategy": strategy}).json()
    b = ease_client.post("/playlists/base", json={**body, "strategy": strategy}).json()
    assert a["tracks"] != b["tracks"]  # the arms really differ


@pytest.mark.slow
def test_hashed_playlists_route_each_variant_to_its_arm_and_log_it(ease_client, ease_state):
    model, digest = ease_state.recommender.recommender, ease_state.recommender.digest
    salt = ease_state.config["ab_test"]["playlists_salt"]
    users = _users(model, 12)
    seen = set()
    for user in users:
        others = [u for u in users[:3] if u != user][:2]
        before = ease_state.log.count()
        answer = ease_client.post("/playlists", json={"user_id": user, "other_users": others})
        body = answer.json()
        variant = assign_variant(user, salt)
        recommender = "ease" if variant == "advanced" else "lightfm"
        assert body["variant"] == variant and body["model_version"] == f"{recommender}-{digest}"
        expected = _expected_playlist(
            ease_state, model, [user, *others], 20, "mean_rank", recommender
        )
        assert [t["track_id"] for t in body["tracks"]] == expected
        log = ease_state.log.frame().iloc[before:]
        assert len(log) == 1 and log.iloc[0]["variant"] == variant
        assert log.iloc[0]["model_version"] == f"{recommender}-{digest}"
        assert log.iloc[0]["forced"] == 0 and log.iloc[0]["experiment"] == "playlists"
        seen.add(variant)
    assert seen == {"base", "advanced"}
    summary = ab_summary(ease_state.log)["playlists"]  # what answered each arm
    assert summary["base"]["model_versions"] == [f"lightfm-{digest}"]
    assert summary["advanced"]["model_versions"] == [f"ease-{digest}"]


@pytest.mark.slow
def test_prediction_log_names_the_recommender_that_answered(ease_client, ease_state, ease_model):
    user, other = _users(ease_model, 2)
    track = str(ease_model.track_ids[0])
    before = ease_state.log.count()
    ease_client.post("/recommendations", json={"user_id": user})
    ease_client.post("/rerank", json={"user_id": user, "track_ids": [track]})
    ease_client.post("/similar-tracks", json={"track_id": track})
    ease_client.post("/playlists/advanced", json={"user_id": user, "other_users": [other]})
    log = ease_state.log.frame().iloc[before:]
    assert list(log["status"]) == [200] * 4
    assert all(v == f"ease-{ease_state.recommender.digest}" for v in log["model_version"])


@pytest.mark.slow
def test_a_cold_start_user_is_scored_by_lightfm_whatever_is_served(ease_client, ease_state):
    engine = ease_state.recommender
    genre = ease_state.catalogue.genres[0]
    new_user = 770001
    created = ease_client.post(
        "/users",
        json={"user_id": new_user, "favourite_genres": [genre]},
        headers={"X-API-Key": API_KEY},
    )
    assert created.status_code == 201
    answer = ease_client.post("/recommendations", json={"user_id": new_user, "k": 10}).json()
    assert answer["cold_start"] and answer["model_version"] == f"lightfm-{engine.digest}"
    bias, emb = engine.recommender.cold_start_representation([genre], False)
    expected = np.argsort(-(engine.item_emb @ emb + engine.item_bias), kind="stable")[:10]
    assert [t["track_id"] for t in answer["tracks"]] == list(engine.recommender.track_ids[expected])
    log = ease_state.log.frame().iloc[-1]
    assert log["model_version"] == f"lightfm-{engine.digest}"
    # In a group with model users the answer is still the arm's recommender's.
    others = _users(engine.recommender, 2)
    group = ease_client.post(
        "/playlists/advanced", json={"user_id": new_user, "other_users": others}
    ).json()
    assert group["cold_start_members"] == [new_user]
    assert group["model_version"] == f"ease-{engine.digest}"


@pytest.mark.slow
def test_short_precomputed_heads_give_the_same_playlists(ease_state, ease_model):
    """Heads cut well short of the catalogue (the ranking's head, then LightFM's best outside
    it) still give the exact playlist: what the heads cannot prove is computed further."""
    config = {**ease_state.config, "playlists": {**ease_state.config["playlists"]}}
    config["playlists"]["precomputed_head"] = DEPTH + 4
    engine = RecommenderEngine(
        ease_model, ease_state.catalogue, config, ease_state.recommender.group_params
    )
    heads = engine.heads_of("ease")
    assert heads.shape == (len(ease_model.user_ids), DEPTH + 4)
    for row in range(len(ease_model.user_ids)):  # each user's best tracks under "ease"
        assert list(heads[row]) == list(_order(ease_model, row)[: DEPTH + 4])
    users = _users(ease_model, 10)
    rng = np.random.default_rng(0)
    for _ in range(12):
        group = [int(u) for u in rng.choice(users, int(rng.integers(2, 6)), replace=False)]
        members = engine.members(group)
        for strategy in ("mean_rank", "least_misery", "borda"):
            got, _ = engine.playlist(members, 10, strategy, None)
            expected = _expected_playlist(ease_state, ease_model, group, 10, strategy, "ease")
            assert list(ease_model.track_ids[got]) == expected


@pytest.mark.slow
def test_pyfunc_predict_answers_from_the_served_ranking(ease_model, tmp_path):
    import mlflow.pyfunc  # noqa: PLC0415

    users = _users(ease_model, 2)
    request = pd.DataFrame({"user_id": [*users, 987654321], "k": DEPTH + 4})
    mlflow.pyfunc.save_model(
        str(tmp_path / "model"), python_model=ease_model, pip_requirements=["mlflow"]
    )
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    for answer in (ease_model.predict(None, request), loaded.predict(request)):
        assert set(answer["user_id"]) == set(users)  # the unknown user gets nothing
        for user in users:
            row = ease_model.user_index[user]
            known = set(ease_model.known[row].indices)
            order = [t for t in _order(ease_model, row) if t not in known][: DEPTH + 4]
            mine = answer[answer["user_id"] == user]
            assert list(mine["track_id"]) == list(ease_model.track_ids[order])
            assert list(mine["rank"]) == list(range(1, DEPTH + 5))


# ---- a model pickled before the other recommenders existed ----------------------------------


@pytest.fixture(scope="module")
def old_project(trained_project, tmp_path_factory, ease_model):
    old = _lightfm_only(ease_model)
    for name in ("served", "rankings", "item_vectors"):
        del old.__dict__[name]  # what an old pickle holds
    return _project_with(trained_project, tmp_path_factory.mktemp("old") / "p", old)


@pytest.mark.slow
def test_an_old_pickle_serves_lightfm(old_project, ease_model):
    with open(old_project / "data" / "06_models" / "recommender.pkl", "rb") as f:
        model = pickle.load(f)
    assert (model.served, model.rankings, model.item_vectors) == ("lightfm", {}, {})
    state = load_service(old_project, "tiny")
    engine = state.recommender
    # The version is named as it was before (LightFM's representations alone).
    digest = hashlib.sha256(engine.item_emb.tobytes() + engine.user_emb.tobytes()).hexdigest()
    assert state.versions["recommender"] == f"lightfm-{digest[:12]}"
    assert state.playlist_arms == {"base": "history", "advanced": "lightfm"}
    user = _users(ease_model, 1)[0]
    row = model.user_index[user]
    scores = np.where(model.known[row].toarray()[0] > 0, -np.inf, model.scorer(np.array([row]))[0])
    expected = np.argsort(-scores, kind="stable")[:10]
    with TestClient(create_app(state)) as client:
        answer = client.post("/recommendations", json={"user_id": user, "k": 10}).json()
        assert answer["model_version"] == state.versions["recommender"]
        assert [t["track_id"] for t in answer["tracks"]] == list(model.track_ids[expected])
        assert client.get("/health").json()["recommenders"] == {
            "lightfm": state.versions["recommender"]
        }
    predicted = model.predict(None, pd.DataFrame({"user_id": [user], "k": [10]}))
    assert list(predicted["track_id"]) == list(model.track_ids[expected])


@pytest.mark.slow
def test_an_arm_the_model_does_not_hold_stops_the_start(old_project):
    arms = {"ab_test": {"playlists_arms": {"advanced": "ease"}}}
    with pytest.raises(StartupError, match="'ease', which the loaded recommender model"):
        load_service(old_project, "tiny", overrides=arms)


@pytest.mark.slow
def test_hnsw_searches_the_served_recommenders_vectors(ease_state, ease_model):
    config = {
        **ease_state.config,
        "similar_tracks": {**ease_state.config["similar_tracks"], "ann_threshold": 0},
    }
    ann = RecommenderEngine(
        ease_model, ease_state.catalogue, config, ease_state.recommender.group_params
    )
    assert ann.index is not None and ann.space().name == "ease"
    assert ease_state.recommender.index is None  # the tiny catalogue: exact search
    for position in range(0, 60, 9):
        exact, exact_sims, how = ease_state.recommender.similar(position, 8, None)
        approx, approx_sims, how_ann = ann.similar(position, 8, None)
        assert (how, how_ann) == ("exact", "hnsw")
        np.testing.assert_allclose(exact_sims, approx_sims, atol=1e-4)
    # LightFM's embeddings have their own space (and index) when asked for by name.
    assert ann.space("lightfm").name == "lightfm" and ann.space("lightfm").index is not None
    lightfm, lightfm_sims, _ = ann.similar(3, 5, None, "lightfm")
    sims = ann.item_unit @ ann.item_unit[3]
    sims[3] = -np.inf
    np.testing.assert_allclose(lightfm_sims, np.sort(sims)[::-1][:5], atol=1e-4)


def test_a_seeded_history_baseline_repeats_per_group_whatever_the_order():
    def members(*ids):
        return [Member(user_id=i, row=None, bias=0.0, embedding=np.zeros(2)) for i in ids]

    def draws(seed, ids, length=5):
        return baseline_rng(seed, members(*ids), length).integers(0, 10**9, 4).tolist()

    assert draws(7, [3, 1, 2]) == draws(7, [1, 2, 3])
    assert draws(7, [1, 2, 3]) != draws(8, [1, 2, 3])
    assert draws(7, [1, 2, 3]) != draws(7, [1, 2, 4])
    assert draws(7, [1, 2, 3]) != draws(7, [1, 2, 3], length=6)
    assert draws(None, [1, 2, 3]) != draws(None, [1, 2, 3])  # fresh entropy without a seed
