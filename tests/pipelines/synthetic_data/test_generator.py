"""The generator: deterministic, calibrated, carrying its signal, and honest about its dirt."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from kedro.io.core import DatasetError

from pozytywka.datasets import GeneratedTextDataset
from pozytywka.pipelines.synthetic_data.nodes import generate_clean_catalogue, write_dirty_exports
from pozytywka.synthetic.generator import base62_ids, generate_catalogue
from pozytywka.synthetic.truth import affinity, affinity_matrix, like_probability


def _played_pairs(events: pd.DataFrame) -> pd.DataFrame:
    ev = events[events["track_id"].notna()]
    return (
        ev.assign(flag=1)
        .pivot_table(
            index=["session_id", "track_id", "user_id"],
            columns="event_type",
            values="flag",
            aggfunc="sum",
            fill_value=0,
            observed=True,
        )
        .reset_index()
    )


def test_same_seed_gives_identical_files_and_truth(synthetic_params):
    a = generate_clean_catalogue(synthetic_params)
    b = generate_clean_catalogue(synthetic_params)
    for x, y in zip(a[:6], b[:6], strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert a[6] == b[6]
    assert write_dirty_exports(*a[:4], synthetic_params) == write_dirty_exports(
        *b[:4], synthetic_params
    )
    other = generate_clean_catalogue({**synthetic_params, "seed": 7})
    assert not other[3]["track_id"].equals(a[3]["track_id"])


def test_sizes_and_contract_fields(tiny_catalogue):
    (users, artists, tracks, events, *_), _, params = tiny_catalogue
    size = params["sizes"]["tiny"]
    assert (len(users), len(artists), len(tracks)) == (
        size["n_users"],
        size["n_artists"],
        size["n_tracks"],
    )
    assert abs(len(events) - size["n_events"]) / size["n_events"] < 0.15
    assert set(events["event_type"]) <= {"play", "skip", "like", "advertisement", "buy_premium"}
    assert tracks["id"].str.fullmatch(r"[0-9A-Za-z]{22}").all()
    assert tracks["popularity"].between(params["behaviour"]["popularity_min"], 100).all()
    assert tracks["id_artist"].isin(artists["id"]).all()
    assert events["user_id"].isin(users["user_id"]).all()
    assert events["track_id"].dropna().isin(tracks["id"]).all()
    # Every session belongs to one user; non-track events carry no track.
    assert events.groupby("session_id")["user_id"].nunique().max() == 1
    no_track = events["event_type"].isin(["advertisement", "buy_premium"])
    assert events.loc[no_track, "track_id"].isna().all()
    assert not events.duplicated().any()


def test_rates_meet_configured_bands(tiny_catalogue):
    (users, _, _, events, *_), _, params = tiny_catalogue
    b = params["behaviour"]
    pairs = _played_pairs(events)
    assert pairs["play"].min() >= 1  # a skip or like always follows its play
    assert pairs["skip"].gt(0).mean() == pytest.approx(b["skip_rate"], abs=0.03)
    assert pairs["like"].gt(0).mean() == pytest.approx(b["like_rate"], abs=0.03)
    one_play = pairs[pairs["play"] == 1]  # a single play is either skipped or liked, not both
    assert not (one_play["skip"].gt(0) & one_play["like"].gt(0)).any()
    plays = events[events["event_type"] == "play"]
    assert plays.groupby("session_id").size().mean() == pytest.approx(
        b["plays_per_session"], rel=0.15
    )
    assert plays.groupby("session_id").size().max() <= b["max_plays_per_session"]


def test_ads_only_for_non_premium_listeners(tiny_catalogue):
    (users, _, _, events, *_), _, _ = tiny_catalogue
    ads = events[events["event_type"] == "advertisement"]
    buys = events[events["event_type"] == "buy_premium"].set_index("user_id")["timestamp"]
    premium = users.set_index("user_id")["premium_user"]
    ad_user_premium = premium.loc[ads["user_id"]].to_numpy()
    # A premium user hears ads only before the moment they bought premium.
    bought_at = ads["user_id"].map(buys)
    assert (~ad_user_premium | (ads["timestamp"] < bought_at).to_numpy()).all()
    assert 0.05 < len(ads) / len(events) < 0.25


def test_outcomes_and_choices_follow_hidden_affinity(tiny_catalogue):
    (users, _, tracks, events, user_truth, track_truth, truth), _, _ = tiny_catalogue
    pairs = _played_pairs(events)
    a = affinity(user_truth, track_truth, truth, pairs["user_id"], pairs["track_id"])
    assert a[pairs["like"].gt(0).to_numpy()].mean() > a[pairs["skip"].gt(0).to_numpy()].mean() + 0.3
    # Played tracks have higher affinity than random tracks for the same users.
    rng = np.random.default_rng(0)
    random_tracks = rng.choice(tracks["id"], len(pairs))
    assert (
        a.mean()
        > affinity(user_truth, track_truth, truth, pairs["user_id"], random_tracks).mean() + 0.2
    )
    # The pairwise and the matrix forms agree.
    some_users, some_tracks = users["user_id"][:3], tracks["id"][:4]
    m = affinity_matrix(user_truth, track_truth, truth, some_users, some_tracks)
    assert m[2, 3] == pytest.approx(
        affinity(user_truth, track_truth, truth, [some_users[2]], [some_tracks[3]])[0]
    )
    p = like_probability(user_truth, track_truth, truth, pairs["user_id"], pairs["track_id"])
    assert p.mean() == pytest.approx(pairs["like"].gt(0).mean(), abs=0.03)


def test_signal_strength_is_a_parameter(synthetic_params):
    def liked_minus_skipped(signal: float) -> float:
        params = {
            **synthetic_params,
            "taste": {**synthetic_params["taste"], "outcome_signal": signal},
        }
        cat = generate_catalogue(params)
        pairs = _played_pairs(cat.events)
        a = affinity(
            cat.user_truth, cat.track_truth, cat.truth_params, pairs["user_id"], pairs["track_id"]
        )
        return a[pairs["like"].gt(0).to_numpy()].mean() - a[pairs["skip"].gt(0).to_numpy()].mean()

    assert liked_minus_skipped(0.0) == pytest.approx(0.0, abs=0.1)
    assert liked_minus_skipped(2.0) > 0.5


def test_dirt_manifest_lists_every_kind_and_scale_zero_is_clean(tiny_catalogue, synthetic_params):
    clean, dirty, _ = tiny_catalogue
    manifest = dirty[4]
    assert set(manifest["sessions"]["dropped"]) == {
        "malformed_line",
        "duplicate_line",
        "null_user_id",
        "null_track_id",
        "unknown_user_id",
        "unknown_track_id",
        "unknown_event_type",
        "invalid_timestamp",
    }
    assert set(manifest["sessions"]["repaired"]) == {"user_id_from_session"}
    # Valid variants of the contract are listed as normalised, never as defects.
    assert set(manifest["sessions"]["normalised"]) == {
        "timestamp_form",
        "event_type_spelling",
        "extra_field",
    }
    assert set(manifest["tracks"]["repaired"]) == {
        "out_of_range",
        "type_coerced",
        "unknown_artist_id",
        "invalid_release_date",
    }
    assert {"null_id", "conflicting_duplicate_id"} <= set(manifest["tracks"]["dropped"])
    assert all(
        manifest[f]["normalised"] == {"extra_field": 1} for f in ["users", "artists", "tracks"]
    )
    params = {**synthetic_params, "dirt": {**synthetic_params["dirt"], "scale": 0}}
    texts = write_dirty_exports(*clean[:4], params)
    nothing = {"dropped": {}, "repaired": {}, "normalised": {}}
    assert texts[4] == {
        "users": nothing,
        "artists": nothing,
        "tracks": nothing,
        "sessions": nothing,
    }
    assert len(texts[3].splitlines()) == len(clean[3])


def test_dirt_writes_the_forms_real_exports_use(tiny_catalogue):
    """Other event-type spellings, timestamp forms, partial release dates, stray keys and null
    user ids, recoverable or not. (Junk copies may repeat a form, so these are lower bounds; the
    cleaning tests check the manifest's exact counts.)"""
    (_, _, _, events, *_), dirty, _ = tiny_catalogue
    users_txt, artists_txt, tracks_txt, sessions_txt, manifest = dirty
    sessions = pd.DataFrame(
        [json.loads(line) for line in sessions_txt.splitlines() if line.endswith("}")]
    )  # truncated (malformed) lines left out
    normalised = manifest["sessions"]["normalised"]
    assert sessions_txt.count('{"id":-1,"session_id"') >= normalised["extra_field"] > 0
    types = sessions["event_type"].astype(str)
    assert {"advertisment", "ADVERTISEMENT", "PLAY"} <= set(types)
    respelled = ~types.isin(
        ["play", "skip", "like", "advertisement", "buy_premium", "pause", "seek", "share", ""]
    )
    assert respelled.sum() >= normalised["event_type_spelling"] > 0
    ts = sessions["timestamp"].astype(str)
    forms = {
        "no fraction": r"T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2})?$",
        "microseconds": r"\.\d{6}$",
        "Z": r"Z$",
        "offset": r"[+-]\d{2}:\d{2}$",
        "space": r"^\S+ \S+$",
    }
    for form, pattern in forms.items():
        assert ts.str.contains(pattern).any(), form
    other_form = ~ts.str.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}")
    assert other_form.sum() >= normalised["timestamp_form"] > 0
    null_user = sessions["user_id"].isna()
    assert null_user.sum() >= (
        manifest["sessions"]["repaired"]["user_id_from_session"]
        + manifest["sessions"]["dropped"]["null_user_id"]
    )
    # Unrecoverable ones sit alone in a session of their own.
    orphans = sessions["session_id"] > events["session_id"].max()
    assert orphans.sum() == manifest["sessions"]["dropped"]["null_user_id"]
    assert null_user[orphans].all()
    release = pd.Series(tracks_txt.split('"release_date":"')[1:]).str.extract(r"^([^\"]*)")[0]
    assert release.str.fullmatch(r"\d{4}-\d{2}").any()
    assert users_txt.count('{"id":-1,') >= manifest["users"]["normalised"]["extra_field"]
    assert artists_txt.count('{"followers":null,') >= 1


def test_base62_ids_are_distinct():
    ids = base62_ids(np.random.default_rng(0), 5000)
    assert len(set(ids)) == 5000
    assert all(len(i) == 22 for i in ids)


def test_generated_file_guard(tmp_path):
    path = tmp_path / "users.jsonl"
    ds = GeneratedTextDataset(filepath=str(path))
    ds.save("generated\n")
    ds.save("generated again\n")  # its own file: may be rewritten
    assert path.read_text() == "generated again\n"
    path.write_text("edited by a person\n")
    with pytest.raises(DatasetError, match="not written by the synthetic generator"):
        ds.save("generated\n")
    assert path.read_text() == "edited by a person\n"
    user_file = tmp_path / "sessions.jsonl"
    user_file.write_text("a real export\n")
    with pytest.raises(DatasetError):
        GeneratedTextDataset(filepath=str(user_file)).save("generated\n")
    assert user_file.read_text() == "a real export\n"


def test_ads_sit_before_their_play_and_events_keep_order(tiny_catalogue):
    (_, _, _, events, *_), _, _ = tiny_catalogue
    ev = events.sort_values(["session_id", "timestamp"], kind="stable")
    assert ev.index.equals(events.index)  # already in (session, time) order
    nxt = ev.groupby("session_id")["event_type"].shift(-1)
    ads = ev["event_type"] == "advertisement"
    assert (nxt[ads] == "play").all()
    # A skip or like comes after its own play, before the next play of the session.
    track_ev = ev[ev["track_id"].notna()]
    prev_play = (
        track_ev["track_id"]
        .where(track_ev["event_type"] == "play")
        .groupby(track_ev["session_id"])
        .ffill()
    )
    follow = track_ev["event_type"] != "play"
    assert (prev_play[follow] == track_ev.loc[follow, "track_id"]).all()


def test_more_favourite_genres_than_a_family_has(synthetic_params):
    params = {
        **synthetic_params,
        "taste": {**synthetic_params["taste"], "favourite_genres": [6, 9]},
    }
    cat = generate_catalogue(params)
    counts = cat.users["favourite_genres"].map(len)
    assert counts.between(5, 9).all()  # the smallest family has 5 genres
    assert cat.users["favourite_genres"].map(lambda g: len(set(g)) == len(g)).all()
