"""Every endpoint through FastAPI's test client, on the trained tiny project."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.calibration import CalibratedClassifierCV

from pozytywka.pipelines.skip_prediction.nodes import score_pairs
from pozytywka.recsys.groups import group_playlist, known_to_group
from pozytywka.serving.app import assign_variant, create_app
from pozytywka.serving.recommender import RecommenderEngine
from tests.project import API_KEY

pytestmark = pytest.mark.slow


def post(client, path, body, **kw):
    return client.post(path, json=body, **kw)


# ---- operations ---------------------------------------------------------------------------


def test_health_docs_and_genres(client, state):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["models"] == state.versions
    assert health["tracks"] == state.recommender.n_tracks
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in [
        "/playlists",
        "/playlists/base",
        "/playlists/advanced",
        "/skip-predictions",
        "/skip-predictions/base",
        "/skip-predictions/advanced",
        "/recommendations",
        "/similar-tracks",
        "/rerank",
        "/events",
        "/users",
        "/ab-summary",
        "/metrics",
    ]:
        assert path in paths
    assert client.get("/genres").json() == state.catalogue.genres


def test_metrics_count_requests_per_endpoint_and_variant(client, ids):
    post(
        client,
        "/playlists/advanced",
        {"user_id": ids["users"][0], "other_users": [ids["users"][1]]},
    )
    text = client.get("/metrics").text
    assert (
        'pozytywka_requests_total{endpoint="/playlists/advanced",status="200",'
        'variant="advanced"}' in text
    )
    assert "pozytywka_request_latency_seconds_bucket" in text


# ---- playlists ----------------------------------------------------------------------------


def test_advanced_playlist_is_the_evaluated_group_playlist(client, state, ids):
    members = ids["users"][:4]
    body = {"user_id": members[0], "other_users": members[1:], "playlist_length": 15}
    for strategy in ["mean_rank", "least_misery", "borda", "gfar"]:
        answer = post(client, "/playlists/advanced", {**body, "strategy": strategy}).json()
        assert answer["variant"] == "advanced" and answer["strategy"] == strategy
        assert answer["model_version"] == state.versions["recommender"]
        engine = state.recommender
        rows = np.array([engine.recommender.user_index[u] for u in members])
        scores = engine.recommender.scores(rows)  # the served recommender's (the arm's)
        excluded = known_to_group(engine.known, rows, "all_members")
        top = 20 if strategy == "gfar" else 100
        expected = group_playlist(scores, 15, strategy, excluded, top)
        got = [t["track_id"] for t in answer["tracks"]]
        assert got == list(state.catalogue.track_ids[expected]), strategy
        first = answer["tracks"][0]
        assert first["name"] and first["artist"] and len(first["track_id"]) == 22


def test_base_playlist_draws_from_member_histories(client, state, ids):
    members = ids["users"][:3]
    answer = post(
        client,
        "/playlists/base",
        {"user_id": members[0], "other_users": members[1:], "playlist_length": 10},
    ).json()
    assert answer["variant"] == "base" and answer["model_version"] == "history-baseline"
    engine = state.recommender
    history = set()
    for u in members:
        history |= set(state.catalogue.track_ids[engine.history(engine.member(u))])
    got = [t["track_id"] for t in answer["tracks"]]
    assert len(got) == 10 and len(set(got)) == 10 and set(got) <= history


def test_playlist_variant_follows_the_stable_hash(client, state, ids):
    salt = state.config["ab_test"]["playlists_salt"]
    seen = set()
    for u in ids["users"][:8]:
        others = [v for v in ids["users"][:3] if v != u][:2]
        variants = {
            post(client, "/playlists", {"user_id": u, "other_users": others}).json()["variant"]
            for _ in range(2)
        }
        assert variants == {assign_variant(u, salt)}
        seen |= variants
    assert seen == {"base", "advanced"}  # 8 users: both arms (checked: hash is fixed)


def test_filters_apply_to_playlists(client, state, ids):
    genre = state.catalogue.genres[int(np.argmax(state.catalogue.genre_tracks.sum(axis=1)))]
    answer = post(
        client,
        "/playlists/advanced",
        {
            "user_id": ids["users"][0],
            "other_users": [ids["users"][1]],
            "playlist_length": 10,
            "filters": {"include_genres": [genre], "exclude_explicit": True},
        },
    ).json()
    g = state.catalogue.genre_index[genre]
    for track in answer["tracks"]:
        i = state.catalogue.track_index[track["track_id"]]
        assert state.catalogue.genre_tracks[g, i] == 1 and not track["explicit"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"other_users": []}, 422, "at least 1 item"),
        ({"playlist_length": 0}, 422, "greater than or equal to 1"),
        ({"playlist_length": 101}, 422, "at most 100"),
        ({"other_users": list(range(1000, 1030))}, 422, "other_users: 30 asked"),
        ({"user_id": "abc"}, 422, "valid integer"),
        ({"user_id": "101"}, 422, "valid integer"),  # no coercion of what the schema says
        ({"user_id": True}, 422, "valid integer"),
        ({"user_id": 101.5}, 422, "valid integer"),
        ({"user_id": 2**53}, 422, "less than or equal to 9007199254740991"),  # exact in JSON
        ({"filters": {"exclude_explicit": 0}}, 422, "valid boolean"),
        ({"other_users": list(range(1000, 2000))}, 422, "at most 999"),
        ({"user_id": -3}, 422, "greater than or equal to 0"),
        ({"other_users": [-1]}, 422, "greater than or equal to 0"),
        ({"strategy": "dictatorship"}, 422, "mean_rank"),
        ({"colour": "blue"}, 422, "Extra inputs"),
        ({"filters": {"include_genres": ["no such genre"]}}, 422, "unknown genre"),
        ({"other_users": [987654321]}, 404, "POST /users"),
    ],
)
def test_playlist_request_errors(client, ids, body, status, message):
    base = {"user_id": ids["users"][0], "other_users": [ids["users"][1]]}
    request = {**base, **body}
    for path in ["/playlists", "/playlists/advanced", "/playlists/base"]:
        answer = post(client, path, request)
        assert answer.status_code == status, (path, answer.text)
        assert message in answer.text


def test_a_group_counts_each_member_once(client, ids):
    """Members listed twice, or the asking user among the others, count once; 101.0 is the
    integer 101 (JSON Schema's integer), as the OpenAPI document promises."""
    me, friend = ids["users"][:2]
    for others in ([friend, friend], [me, friend], [float(friend)]):
        answer = post(client, "/playlists/advanced", {"user_id": me, "other_users": others})
        assert answer.status_code == 200, answer.text
        assert answer.json()["members"] == [me, friend]
    alone = post(client, "/playlists/base", {"user_id": me, "other_users": [me]})
    assert alone.status_code == 200 and alone.json()["members"] == [me]


def test_oversized_and_malformed_bodies(client, ids):
    huge = {"user_id": ids["users"][0], "other_users": [ids["users"][1]], "pad": "x" * 300_000}
    assert post(client, "/playlists", huge).status_code == 413
    answer = client.post(
        "/playlists", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422


# ---- skip prediction ----------------------------------------------------------------------


def test_skip_model_variant_matches_the_batch_scorer(client, state, served_project, ids):
    data = served_project / "data"
    tables = {
        n: pd.read_parquet(data / "03_primary" / f"{n}.parquet")
        for n in ["tracks", "artists", "users"]
    }
    dataset = pd.read_parquet(data / "05_model_input" / "skip_dataset.parquet")
    genres = json.loads((data / "04_feature" / "genre_vocabulary.json").read_text())
    pairs = dataset[dataset["split"] == "test"][["user_id", "track_id"]].head(8)
    pairs = pd.concat(
        [pairs, pd.DataFrame({"user_id": [ids["users"][0]], "track_id": [ids["track"]]})]
    )
    batch, _ = score_pairs(
        pairs,
        state.skip.model,
        dataset,
        tables["tracks"],
        tables["artists"],
        tables["users"],
        genres,
        state.skip.params,
    )
    # The service answers with the calibrated probability (the pipeline's final model).
    assert isinstance(state.skip.model, CalibratedClassifierCV)
    for row in batch.itertuples():
        answer = post(
            client,
            "/skip-predictions/advanced",
            {"user_id": int(row.user_id), "track_id": row.track_id},
        ).json()
        assert answer["skip_probability"] == pytest.approx(row.skip_probability, abs=1e-6)
        assert answer["prediction"] == row.prediction
        assert answer["model_version"] == state.versions["skip"]


def test_skip_base_is_the_genre_rule(client, state, ids):
    for u in ids["users"][:5]:
        for t in state.catalogue.track_ids[:20:4]:
            answer = post(client, "/skip-predictions/base", {"user_id": u, "track_id": t}).json()
            assert answer["variant"] == "base" and answer["model_version"] == "genre-rule"
            assert answer["prediction"] == ("PLAY" if answer["genre_match"] else "SKIP")
            # The answer and its probability agree; the group's skip share is said apart.
            assert answer["skip_probability"] == (0.0 if answer["genre_match"] else 1.0)
            assert answer["observed_skip_share"] == pytest.approx(
                state.skip.rule_probability[answer["genre_match"]], abs=1e-6
            )


def test_skip_variant_has_its_own_split(client, state, ids):
    salt = state.config["ab_test"]["skip_predictions_salt"]
    for u in ids["users"][:6]:
        answer = post(client, "/skip-predictions", {"user_id": u, "track_id": ids["track"]})
        assert answer.json()["variant"] == assign_variant(u, salt)


@pytest.mark.parametrize(
    "body, status",
    [
        ({"track_id": "short"}, 422),
        ({"track_id": None}, 422),
        ({"user_id": "x"}, 422),
        ({"track_id": "0" * 22}, 404),
        ({"user_id": 987654321}, 404),
    ],
)
def test_skip_request_errors(client, ids, body, status):
    request = {"user_id": ids["users"][0], "track_id": ids["track"], **body}
    for path in ["/skip-predictions", "/skip-predictions/base", "/skip-predictions/advanced"]:
        assert post(client, path, request).status_code == status, path


# ---- personalisation ----------------------------------------------------------------------


def test_recommendations_are_the_packaged_models_top_k(client, state, ids):
    u = ids["users"][0]
    answer = post(client, "/recommendations", {"user_id": u, "k": 7}).json()
    expected = state.recommender.recommender.predict(None, pd.DataFrame({"user_id": [u], "k": [7]}))
    assert [t["track_id"] for t in answer["tracks"]] == list(expected["track_id"])
    assert not answer["cold_start"]
    history = set(state.catalogue.track_ids[state.recommender.history(state.recommender.member(u))])
    assert not history & {t["track_id"] for t in answer["tracks"]}
    scores = [t["score"] for t in answer["tracks"]]
    assert scores == sorted(scores, reverse=True)


def test_recommendation_filters(client, state, ids):
    u, genre = ids["users"][1], ids["genre"]
    g = state.catalogue.genre_index[genre]
    kept = post(
        client, "/recommendations", {"user_id": u, "k": 10, "filters": {"include_genres": [genre]}}
    ).json()
    dropped = post(
        client,
        "/recommendations",
        {"user_id": u, "k": 10, "filters": {"exclude_genres": [genre], "exclude_explicit": True}},
    ).json()
    for track in kept["tracks"]:
        assert state.catalogue.genre_tracks[g, state.catalogue.track_index[track["track_id"]]]
    for track in dropped["tracks"]:
        i = state.catalogue.track_index[track["track_id"]]
        assert not state.catalogue.genre_tracks[g, i] and not track["explicit"]
    assert len(kept["tracks"]) > 0 and len(dropped["tracks"]) == 10
    assert post(client, "/recommendations", {"user_id": u, "k": 1000}).status_code == 422


def test_similar_tracks_exact_and_hnsw_agree(client, state, served_project, ids):
    config = {
        **state.config,
        "similar_tracks": {**state.config["similar_tracks"], "ann_threshold": 0},
    }
    ann = RecommenderEngine(
        state.recommender.recommender, state.catalogue, config, state.recommender.group_params
    )
    assert ann.index is not None and state.recommender.index is None
    for position in range(0, 50, 7):
        exact, exact_sims, how = state.recommender.similar(position, 10, None)
        approx, approx_sims, how_ann = ann.similar(position, 10, None)
        assert (how, how_ann) == ("exact", "hnsw")
        assert position not in approx and len(set(approx)) == 10
        # The same neighbours up to near-ties, which an index may order either way.
        np.testing.assert_allclose(exact_sims, approx_sims, atol=1e-4)
        unit = state.recommender.space().unit  # the served recommender's track vectors
        all_sims = unit @ unit[position]
        np.testing.assert_allclose(all_sims[approx], approx_sims, atol=1e-4)
    answer = post(
        client,
        "/similar-tracks",
        {"track_id": ids["track"], "k": 5, "filters": {"exclude_explicit": True}},
    ).json()
    assert answer["search"] == "exact" and len(answer["tracks"]) == 5
    assert ids["track"] not in [t["track_id"] for t in answer["tracks"]]
    assert not any(t["explicit"] for t in answer["tracks"])
    sims = [t["score"] for t in answer["tracks"]]
    assert sims == sorted(sims, reverse=True)


def test_rerank_orders_by_the_users_scores(client, state, ids):
    u = ids["users"][2]
    tracks = list(state.catalogue.track_ids[:30])
    explicit = [t for t in tracks if state.catalogue.explicit[state.catalogue.track_index[t]]]
    answer = post(
        client,
        "/rerank",
        {"user_id": u, "track_ids": [*tracks, "Z" * 22], "filters": {"exclude_explicit": True}},
    ).json()
    ranked = [t["track_id"] for t in answer["tracks"]]
    member = state.recommender.member(u)
    scores = {
        t: float(state.recommender.scores([member])[0][state.catalogue.track_index[t]])
        for t in ranked
    }
    assert ranked == sorted(ranked, key=lambda t: -scores[t])
    assert set(ranked) == set(tracks) - set(explicit)
    reasons = {r["track_id"]: r["reason"] for r in answer["not_ranked"]}
    assert reasons == {"Z" * 22: "unknown_track", **{t: "filtered" for t in explicit}}
    assert post(client, "/rerank", {"user_id": u, "track_ids": ["bad"]}).status_code == 422
    assert post(client, "/rerank", {"user_id": u, "track_ids": [tracks[0]] * 2}).status_code == 422


# ---- cold start, writes -------------------------------------------------------------------


def test_cold_start_user_gets_answers_from_favourite_genres(client, state, ids):
    genre_sizes = np.asarray(state.catalogue.genre_tracks.sum(axis=1)).ravel()
    genre = state.catalogue.genres[int(np.argsort(genre_sizes)[len(genre_sizes) // 2])]
    new_user = 990001
    assert post(client, "/recommendations", {"user_id": new_user}).status_code == 404
    created = post(
        client,
        "/users",
        {"user_id": new_user, "favourite_genres": [genre]},
        headers={"X-API-Key": API_KEY},
    )
    assert created.status_code == 201 and created.json()["favourite_genres_known"] == [genre]
    answer = post(client, "/recommendations", {"user_id": new_user, "k": 20}).json()
    assert answer["cold_start"] and len(answer["tracks"]) == 20
    # Scored from the favourite genre's feature embedding, weighted as in a training row
    # (identity slot included): the genre, not just popularity, decides.
    rec = state.recommender.recommender
    column = rec.user_feature_index[f"fav_{genre}"]
    emb = rec.user_feature_embeddings[column] / 2
    expected = np.argsort(
        -(state.recommender.item_emb @ emb + state.recommender.item_bias), kind="stable"
    )[:20]
    assert [t["track_id"] for t in answer["tracks"]] == list(state.catalogue.track_ids[expected])
    other = state.catalogue.genres[int(np.argmax(genre_sizes))]
    post(
        client,
        "/users",
        {"user_id": new_user + 1, "favourite_genres": [other]},
        headers={"X-API-Key": API_KEY},
    )
    second = post(client, "/recommendations", {"user_id": new_user + 1, "k": 20}).json()
    assert second["cold_start"] and second["tracks"] != answer["tracks"]
    playlist = post(
        client, "/playlists/advanced", {"user_id": new_user, "other_users": ids["users"][:2]}
    ).json()
    assert playlist["cold_start_members"] == [new_user] and len(playlist["tracks"]) == 20
    skip = post(
        client, "/skip-predictions/advanced", {"user_id": new_user, "track_id": ids["track"]}
    ).json()
    assert skip["cold_start"] and 0 <= skip["skip_probability"] <= 1
    # A retry of the same registration answers the same; other details for the id are a 409.
    again = post(
        client,
        "/users",
        {"user_id": new_user, "favourite_genres": [genre]},
        headers={"X-API-Key": API_KEY},
    )
    assert again.status_code == 201 and again.json() == created.json()
    changed = post(
        client,
        "/users",
        {"user_id": new_user, "favourite_genres": [other]},
        headers={"X-API-Key": API_KEY},
    )
    assert changed.status_code == 409
    lines = state.users_writer.read_all()
    assert [r["user_id"] for r in lines].count(new_user) == 1


def test_events_are_recorded_in_the_raw_format(client, state, ids):
    event = {
        "session_id": 424242,
        "timestamp": "2026-11-22T18:00:00+01:00",
        "user_id": ids["users"][0],
        "track_id": ids["track"],
        "event_type": "play",
    }
    assert post(client, "/events", {"events": [event]}).status_code == 401
    assert (
        post(client, "/events", {"events": [event]}, headers={"X-API-Key": "wrong"}).status_code
        == 401
    )
    bad = [
        {**event, "event_type": "dance"},
        {**event, "track_id": None},
        {**event, "event_type": "advertisement"},
        {**event, "timestamp": "yesterday"},
        {**event, "timestamp": "2026-11-22T18:00:00"},
    ]
    for e in bad:
        answer = post(client, "/events", {"events": [e]}, headers={"X-API-Key": API_KEY})
        assert answer.status_code == 422, e
    assert (
        post(client, "/events", {"events": []}, headers={"X-API-Key": API_KEY}).status_code == 422
    )
    ok = post(
        client,
        "/events",
        {"events": [event, {**event, "event_type": "like"}]},
        headers={"X-API-Key": API_KEY},
    )
    assert ok.status_code == 202 and ok.json()["accepted"] == 2
    shown = ok.json()["file"]
    assert shown.startswith("data/01_raw/incoming/sessions/")  # relative: no server paths
    lines = [json.loads(x) for x in (state.events.root / shown).read_text().splitlines()]
    assert lines[-2] == {**event, "timestamp": "2026-11-22T17:00:00Z"}


def test_writes_are_disabled_without_a_configured_key(state, ids):
    key, state.api_key = state.api_key, None
    try:
        with TestClient(create_app(state, close_on_shutdown=False)) as bare:
            answer = post(
                bare,
                "/users",
                {"user_id": 5, "favourite_genres": ["x"]},
                headers={"X-API-Key": "anything"},
            )
            assert answer.status_code == 503 and "POZYTYWKA_API_KEY" in answer.text
    finally:
        state.api_key = key


def test_a_write_without_the_key_is_refused_before_its_body_is_read(client, state):
    """Not JSON, over a deep nesting or a huge size: without the key every write is a 401
    (the key is checked first, so a keyless client costs the service no parsing)."""
    for body in [b"not json", b"[" * 10_000, b'{"events": [' + b"1," * 200_000 + b"1]}"]:
        for route in ("/events", "/users"):
            for headers in ({}, {"X-API-Key": "wrong"}):
                answer = client.post(
                    route, content=body, headers={"content-type": "application/json", **headers}
                )
                assert answer.status_code == 401, (route, body[:20], answer.text)
                assert answer.json() == {"detail": "missing or wrong X-API-Key header"}
    key, state.api_key = state.api_key, None
    try:
        answer = client.post("/events", content=b"not json", headers={"X-API-Key": "x"})
        assert answer.status_code == 503
    finally:
        state.api_key = key


# ---- hostile and careless input (issue: service hardening) ----------------------------------


def _raw(client, path: str, text: str, **headers):
    return client.post(
        path, content=text.encode(), headers={"content-type": "application/json", **headers}
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"user_id": 9223372036854775808, "other_users": [102]}',  # 2^63: past SQLite's int
        '{"user_id": NaN, "other_users": [102]}',
        '{"user_id": Infinity, "other_users": [102]}',
        '{"user_id": 1e400, "other_users": [102]}',
        '{"user_id": "\\ud800", "other_users": [102]}',  # a lone surrogate
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["2^63", "NaN", "Infinity", "1e400", "lone-surrogate", "nested-100000"],
)
def test_values_json_allows_but_the_schema_does_not_get_a_logged_422(client, state, text):
    before = state.log.count()
    for path in ["/playlists", "/skip-predictions", "/recommendations"]:
        answer = _raw(client, path, text)
        assert answer.status_code == 422, (path, answer.text[:200])
        assert isinstance(answer.json()["detail"], list)
    log = state.log.frame().tail(3)
    assert state.log.count() == before + 3 and set(log["status"]) == {422}
    assert log["user_id"].isna().all()


def test_event_fields_out_of_range_get_a_422_and_nothing_is_written(client, state, ids):
    event = {
        "session_id": 1,
        "timestamp": "2026-11-22T18:00:00Z",
        "user_id": ids["users"][0],
        "track_id": ids["track"],
        "event_type": "play",
    }
    for bad in [
        {"timestamp": "0001-01-01T00:00:00+14:00"},
        {"timestamp": "9999-12-31T23:59:59-12:00"},
        {"timestamp": "1901-01-01T00:00:00Z"},
        {"session_id": 2**70},
    ]:
        answer = post(
            client, "/events", {"events": [{**event, **bad}]}, headers={"X-API-Key": API_KEY}
        )
        assert answer.status_code == 422, (bad, answer.text[:300])


def test_json_depth_is_checked_outside_strings():
    from pozytywka.serving.observe import MAX_JSON_DEPTH, too_deep  # noqa: PLC0415

    assert too_deep(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert not too_deep(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    assert not too_deep(b'{"name": "' + b"[" * 1000 + b'"}')  # brackets in a string
    assert not too_deep(b'{"a": "\\"' + b"[" * 1000 + b'"}')  # after an escaped quote
    # An escaped backslash does not escape the quote after it: the brackets are outside.
    deep = b'{"a": "\\\\", "b": ' + b"[" * 40 + b"]" * 40 + b"}"
    assert json.loads(deep)["a"] == "\\" and too_deep(deep)
    nested = b"[" * 20 + b'"]]]]' + b"[" * 50 + b'"' + b"]" * 20
    assert not too_deep(nested) and too_deep(b"[" * 13 + nested + b"]" * 13)


def test_refused_ab_answers_are_logged_against_the_users_arm(client, state, ids):
    user = ids["users"][0]
    arm = assign_variant(user, state.config["ab_test"]["playlists_salt"])
    too_long = {"user_id": user, "other_users": [ids["users"][1]], "playlist_length": 10**6}
    for path, variant, forced in [
        ("/playlists", arm, 0),
        ("/playlists/base", "base", 1),
        ("/playlists/advanced", "advanced", 1),
    ]:
        assert post(client, path, too_long).status_code == 422
        row = state.log.frame().iloc[-1]
        assert (row["endpoint"], row["status"]) == (path, 422)
        assert (row["experiment"], row["variant"], row["forced"]) == ("playlists", variant, forced)
    # A body with no usable user id still counts in the experiment, without an arm.
    assert post(client, "/skip-predictions", {"user_id": "x"}).status_code == 422
    row = state.log.frame().iloc[-1]
    assert row["experiment"] == "skip_predictions" and pd.isna(row["variant"])
