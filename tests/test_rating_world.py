"""benchmarks/rating_world.py: a small ratings-style world is a valid export by the contract
(design §1). data_processing's cleaning drops, repairs and normalises none of it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from pozytywka.contract import BASE62_ID
from pozytywka.pipelines.data_processing.nodes import (
    clean_artists,
    clean_sessions,
    clean_tracks,
    clean_users,
)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "rating_world.py"


@pytest.fixture(scope="module")
def rating_world():
    spec = importlib.util.spec_from_file_location("rating_world", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def world(rating_world, tmp_path_factory):
    raw = tmp_path_factory.mktemp("rating_world")
    facts = rating_world.write_rating_world(raw, n_users=60, n_tracks=300, seed=5)
    return raw, facts


def _text(raw: Path, name: str) -> str:
    return (raw / f"{name}.jsonl").read_text(encoding="utf-8")


def test_cleaning_keeps_every_record_unchanged(world):
    raw, facts = world
    users, users_quality, users_rejected = clean_users(_text(raw, "users"))
    artists, artists_quality, artists_rejected = clean_artists(_text(raw, "artists"))
    tracks, tracks_quality, tracks_rejected = clean_tracks(_text(raw, "tracks"), artists)
    events, sessions_quality, sessions_rejected = clean_sessions(
        _text(raw, "sessions"), users, tracks
    )
    for quality, rejected in [
        (users_quality, users_rejected),
        (artists_quality, artists_rejected),
        (tracks_quality, tracks_rejected),
        (sessions_quality, sessions_rejected),
    ]:
        assert rejected.empty
        assert quality["rows_dropped"] == quality["rows_repaired"] == 0
        assert quality["rows_normalised"] == 0
        assert quality["rows_kept"] == quality["rows_read"]
    assert (len(users), len(artists), len(tracks)) == (60, facts["artists"], 300)
    assert len(events) == facts["events"]
    counts = events["event_type"].value_counts()
    assert counts["like"] == facts["likes"] and counts["skip"] == facts["skips"]
    assert counts["play"] == facts["ratings"]


def test_events_follow_the_contracts_semantics(world):
    raw, facts = world
    events = pd.read_json(raw / "sessions.jsonl", lines=True, dtype={"track_id": str})
    assert events.groupby("session_id")["user_id"].nunique().max() == 1  # one user a session
    tracked = events[events["track_id"].notna()]
    plays = tracked[tracked["event_type"] == "play"]
    assert not plays.duplicated(["user_id", "track_id"]).any()  # one rating per (user, track)
    per_pair = tracked.groupby(["session_id", "track_id"])["event_type"].agg(tuple)
    assert set(per_pair) <= {("play",), ("play", "like"), ("play", "skip")}  # in time order
    assert (plays.groupby("user_id").size() >= 20).all()
    assert events.loc[events["track_id"].isna(), "event_type"].eq("advertisement").all()
    tracks = pd.read_json(raw / "tracks.jsonl", lines=True)
    assert tracks["id"].str.fullmatch(BASE62_ID[1:-1]).all() and tracks["id"].is_unique
    assert facts["ratings"] == sum(facts["stars"].values()) == len(plays)


def test_the_same_seed_writes_the_same_files(rating_world, world, tmp_path):
    raw, _ = world
    rating_world.write_rating_world(tmp_path, n_users=60, n_tracks=300, seed=5)
    for name in rating_world.FILES:
        assert _text(tmp_path, name) == _text(raw, name), name


def test_the_script_never_replaces_an_export(rating_world, world, capsys):
    raw, _ = world
    before = _text(raw, "users")
    assert rating_world.main(["--users", "30", "--tracks", "100", "--out", str(raw)]) == 1
    assert "not replaced" in capsys.readouterr().err
    assert _text(raw, "users") == before
    first = json.loads(before.splitlines()[0])
    assert set(first) == {"user_id", "name", "city", "street", "favourite_genres", "premium_user"}
