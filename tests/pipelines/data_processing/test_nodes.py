"""Cleaning: every defect kind is counted and handled, and no good record is lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pozytywka.pipelines.data_processing.nodes import (
    RawSchemaError,
    clean_artists,
    clean_sessions,
    clean_tracks,
    clean_users,
    merge_listening_events,
    parse_jsonl,
    report_data_quality,
    with_incoming,
)
from pozytywka.pipelines.synthetic_data.nodes import write_dirty_exports

A1, A2 = "A" * 22, "B" * 22
T1, T2, T3 = "1" * 22, "2" * 22, "3" * 22


def jsonl(*records) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def track(tid, **overrides):
    base = {"id": tid, "name": "x", "popularity": 60, "duration_ms": 200000, "explicit": 0,
            "id_artist": A1, "release_date": "2001-05-04", "danceability": 0.5, "energy": 0.5,
            "speechiness": 0.1, "acousticness": 0.2, "instrumentalness": 0.0, "liveness": 0.1,
            "valence": 0.4, "key": 5, "loudness": -7.0, "tempo": 120.0}
    return {**base, **overrides}


@pytest.fixture
def users():
    return clean_users(jsonl({"user_id": 1, "name": "Ann", "city": "Łódź", "street": "x",
                              "favourite_genres": ["rock"], "premium_user": False},
                             {"user_id": 2, "name": "Bob", "city": "Gdańsk", "street": "y",
                              "favourite_genres": ["jazz"], "premium_user": True}))[0]


@pytest.fixture
def artists():
    return clean_artists(jsonl({"id": A1, "name": "a", "genres": ["rock"]},
                               {"id": A2, "name": "b", "genres": ["jazz"]}))[0]


@pytest.fixture
def tracks(artists):
    return clean_tracks(jsonl(track(T1), track(T2)), artists)[0]


def test_parse_counts_malformed_lines_and_skips_blank_ones():
    df, rejects = parse_jsonl('{"user_id": 1, "favourite_genres": [], "premium_user": true}\n'
                              '\n{"user_id": 2, "favou\n[1, 2]\n', "users")
    assert list(df["user_id"]) == [1]
    assert list(rejects["line"]) == [3, 4]
    assert set(rejects["reason"]) == {"malformed_line"}
    assert rejects["raw"].iloc[0] == '{"user_id": 2, "favou'


def test_fast_and_line_by_line_parsing_agree():
    good = jsonl(*[{"session_id": i, "timestamp": "2024-01-01T00:00:00.000", "user_id": 1,
                    "track_id": None if i % 2 else T1, "event_type": "play"} for i in range(5)])
    fast, _ = parse_jsonl(good, "sessions")
    # A line that looks like an object but is not JSON sends the parser line by line.
    slow, rejects = parse_jsonl(good + '{"session_id": }\n', "sessions")
    assert rejects["line"].tolist() == [6]
    cols = ["session_id", "timestamp", "user_id", "track_id", "event_type", "_line"]
    assert fast[cols].astype(object).where(fast[cols].notna(), None).values.tolist() == \
        slow[cols].astype(object).where(slow[cols].notna(), None).values.tolist()


def test_a_file_without_a_contract_field_is_refused():
    with pytest.raises(RawSchemaError, match="event_type"):
        parse_jsonl(jsonl({"session_id": 1, "timestamp": "2024-01-01T00:00:00.000",
                           "user_id": 1, "track_id": None}), "sessions")


def test_users_coercions_and_drops():
    text = jsonl(
        {"user_id": 1, "name": "Ann", "favourite_genres": ["Rock"], "premium_user": False},
        {"user_id": 2, "name": "Bob", "favourite_genres": "jazz, polish hip hop",
         "premium_user": "true"},
        {"user_id": None, "name": "Nobody", "favourite_genres": [], "premium_user": False},
        {"user_id": 1, "name": "Ann again", "favourite_genres": [], "premium_user": True},
        {"user_id": 3, "name": "Cy", "favourite_genres": None, "premium_user": "maybe"},
    )
    out, counts, rejected = clean_users(text + text.splitlines()[0] + "\n")
    assert list(out["user_id"]) == [1, 2, 3]
    assert out.loc[1, "favourite_genres"] == ["jazz", "polish hip hop"]
    assert out.loc[0, "favourite_genres"] == ["rock"]
    assert out["premium_user"].tolist() == [False, True, False]
    assert out.loc[0, "name"] == "Ann"  # the first record of a reused id wins
    assert counts == {"conflicting_duplicate_id": 1, "duplicate_line": 1, "null_id": 1,
                      "type_coerced": 2, "missing_favourite_genres": 1,
                      "invalid_premium_flag": 1}
    assert len(rejected) == 3


def test_tracks_out_of_range_values_become_null_and_are_counted(artists):
    text = jsonl(
        track(T1),
        track(T2, popularity=150, danceability=1.5, release_date="2024-13-45"),
        track(T3, popularity="57", id_artist="Z" * 22, explicit=True, release_date="1999"),
        track(None),
        "{not json",
    )
    out, counts, rejected = clean_tracks(text, artists)
    assert list(out["track_id"]) == [T1, T2, T3]
    t2, t3 = out.iloc[1], out.iloc[2]
    assert pd.isna(t2["popularity"]) and pd.isna(t2["danceability"])
    assert t2["energy"] == 0.5 and pd.isna(t2["release_year"])
    assert t3["popularity"] == 57 and pd.isna(t3["artist_id"]) and bool(t3["explicit"])
    assert t3["release_year"] == 1999 and out.iloc[0]["release_year"] == 2001
    assert counts["out_of_range"] == 2
    assert counts["out_of_range.popularity"] == 1 and counts["out_of_range.danceability"] == 1
    assert counts["type_coerced"] == 1 and counts["unknown_artist_id"] == 1
    assert counts["invalid_release_date"] == 1
    assert counts["null_id"] == 1 and counts["malformed_line"] == 1
    assert set(rejected["reason"]) == {"null_id", "malformed_line"}


def test_sessions_every_defect_kind(users, tracks):
    def ev(sid=1, ts="2024-01-01T10:00:00.000", uid=1, tid=T1, et="play"):
        return {"session_id": sid, "timestamp": ts, "user_id": uid, "track_id": tid,
                "event_type": et}

    good = [ev(), ev(ts="2024-01-01T10:01:00.000", et="skip"),
            ev(ts="2024-01-01T10:02:00.000", tid=T2),
            ev(ts="2024-01-01T10:03:00.000", tid=None, et="advertisement"),
            ev(sid=2, uid=2, ts="2024-01-01 11:00:00.500", tid=T2, et="PLAY"),
            ev(sid=2, uid=2, ts="2024-01-01T11:01:00Z", tid=T2, et=" like"),
            ev(sid=2, uid=2, ts="2024-01-01T11:02:00.000+00:00", tid=T1,
               et="advertisement")]
    junk = [ev(uid=None), ev(tid=None), ev(uid=999), ev(tid="9" * 22), ev(et="pause"),
            ev(ts="yesterday"), ev(sid=None), "{broken", json.dumps(good[0])]
    out, counts, rejected = clean_sessions(jsonl(*good, *junk), users, tracks)
    assert len(out) == len(good)
    assert out["event_type"].tolist() == ["play", "skip", "play", "advertisement", "play",
                                          "like", "advertisement"]
    assert out["track_id"].isna().tolist() == [False, False, False, True, False, False, True]
    assert out.loc[4, "timestamp"] == pd.Timestamp("2024-01-01 11:00:00.500", tz="UTC")
    assert counts == {
        "null_user_id": 1, "null_track_id": 1, "unknown_user_id": 1, "unknown_track_id": 1,
        "unknown_event_type": 1, "invalid_timestamp": 1, "null_session_id": 1,
        "malformed_line": 1, "duplicate_line": 1, "event_type_repaired": 2,
        "timestamp_repaired": 3, "track_on_non_track_event": 1,
    }
    assert len(rejected) == len(junk)
    assert rejected["raw"].notna().all()


def test_generated_exports_clean_back_to_the_generated_tables(tiny_catalogue):
    """The dirt the generator injected is found exactly, and every original record survives."""
    (g_users, g_artists, g_tracks, g_events, *_), dirty, _ = tiny_catalogue
    users_txt, artists_txt, tracks_txt, sessions_txt, manifest = dirty
    users, uq, _ = clean_users(users_txt)
    artists, aq, _ = clean_artists(artists_txt)
    tracks, tq, _ = clean_tracks(tracks_txt, artists)
    events, sq, _ = clean_sessions(sessions_txt, users, tracks)
    for got, file in [(uq, "users"), (aq, "artists"), (tq, "tracks"), (sq, "sessions")]:
        assert {k: v for k, v in got.items() if "." not in k} == manifest[file], file
    assert users["user_id"].tolist() == g_users["user_id"].tolist()
    assert artists["artist_id"].tolist() == g_artists["id"].tolist()
    assert tracks["track_id"].tolist() == g_tracks["id"].tolist()
    assert len(events) == len(g_events)

    def canonical(ev: pd.DataFrame) -> pd.DataFrame:
        # One timestamp form drops the milliseconds, so compare at second precision.
        out = pd.DataFrame({"session_id": ev["session_id"].to_numpy(),
                            "second": ev["timestamp"].dt.floor("s").to_numpy(),
                            "event_type": ev["event_type"].astype(str).to_numpy(),
                            "track_id": ev["track_id"].astype(object).fillna("-").to_numpy(),
                            "user_id": ev["user_id"].to_numpy()})
        return out.sort_values(list(out.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(canonical(events), canonical(g_events))
    # Values repaired in place come back as generated or as null, never as something else.
    pops = tracks["popularity"].astype("float64").to_numpy()
    same = pd.isna(pops) | (pops == g_tracks["popularity"].to_numpy())
    assert same.all()


def test_clean_exports_keep_every_value(tiny_catalogue):
    """With no dirt every file takes the fast parser; lists and flags must survive it."""
    (g_users, g_artists, g_tracks, g_events, *_), _, params = tiny_catalogue
    texts = write_dirty_exports(g_users, g_artists, g_tracks, g_events,
                                {**params, "dirt": {**params["dirt"], "scale": 0}})
    users, uq, _ = clean_users(texts[0])
    artists, aq, _ = clean_artists(texts[1])
    tracks, tq, _ = clean_tracks(texts[2], artists)
    events, sq, _ = clean_sessions(texts[3], users, tracks)
    assert uq == aq == tq == sq == {}
    assert users["favourite_genres"].tolist() == g_users["favourite_genres"].tolist()
    assert users["premium_user"].tolist() == g_users["premium_user"].tolist()
    assert artists["genres"].tolist() == g_artists["genres"].tolist()
    assert tracks["tempo"].tolist() == g_tracks["tempo"].tolist()
    assert tracks["explicit"].tolist() == g_tracks["explicit"].astype(bool).tolist()
    assert len(events) == len(g_events)


def test_ids_given_as_text_are_repaired_and_odd_lines_parse_alike(users, tracks):
    rows = [{"session_id": "1", "timestamp": "2024-01-01T10:00:00.000", "user_id": 1,
             "track_id": T1, "event_type": "play"},
            {"session_id": 2, "timestamp": "2024-01-01T10:00:00.000", "user_id": True,
             "track_id": T1, "event_type": "play"},
            {"session_id": 3, "timestamp": "2024-01-01T10:00:00.000", "user_id": 2.0,
             "track_id": T2, "event_type": "play"},
            {"session_id": 3, "timestamp": "2024-01-01T10:01:00.000", "user_id": 1,
             "track_id": T2, "event_type": "skip"}]
    text = "\ufeff" + "  " + jsonl(*rows).replace("\n", " \n", 1)
    out, counts, rejected = clean_sessions(text, users, tracks)
    assert out["session_id"].tolist() == [1, 3, 3]
    assert counts == {"type_coerced": 1, "invalid_user_id": 1, "session_user_conflict": 1}
    assert rejected["line"].tolist() == [2]


def test_merge_and_report(users, artists, tracks):
    events, sq, srej = clean_sessions(jsonl(
        {"session_id": 1, "timestamp": "2024-01-01T10:00:00.000", "user_id": 2, "track_id": T1,
         "event_type": "play"},
        {"session_id": 1, "timestamp": "2024-01-01T10:00:01.000", "user_id": 2,
         "track_id": None, "event_type": "buy_premium"}, "{x"), users, tracks)
    merged = merge_listening_events(events, tracks, artists, users)
    assert len(merged) == 1
    assert merged.loc[0, "artist_name"] == "a" and bool(merged.loc[0, "premium_user"])
    empty = pd.DataFrame(columns=["file", "line", "reason", "raw"])
    report, md, metrics, rejected = report_data_quality(
        {}, {}, {"out_of_range": 2}, sq, users, artists, tracks, events, empty, empty, empty,
        srej)
    assert {k: v for k, v in report["defects"].items() if v} == {"malformed_line": 1,
                                                                 "out_of_range": 2}
    sessions = report["files"]["sessions"]
    assert (sessions["rows_read"], sessions["rows_kept"], sessions["rows_dropped"]) == (3, 2, 1)
    assert sessions["defects"]["malformed_line"] == 1
    assert sessions["defects"]["unknown_track_id"] == 0  # checked kinds are listed with zeros
    assert "| sessions | malformed_line | 1 | dropped |" in md
    assert "| tracks | out_of_range | 2 | repaired |" in md
    assert "| sessions | null_user_id | 0 | dropped |" in md
    assert metrics["dq.sessions.malformed_line"]["value"] == 1.0
    assert metrics["dq.users.null_id"]["value"] == 0.0
    with pytest.raises(ValueError, match="DEFECT_KINDS"):
        report_data_quality({"brand_new_kind": 1}, {}, {}, {}, users, artists, tracks, events,
                            empty, empty, empty, srej)
    assert len(rejected) == 1


def test_incoming_files_follow_the_export_in_name_order():
    incoming = {"2026-11-23": lambda: '{"b": 2}\n', "2026-11-22": lambda: '{"a": 1}\n\n',
                "2026-11-24": lambda: ""}
    assert with_incoming('{"x": 0}\n', incoming) == '{"x": 0}\n{"a": 1}\n{"b": 2}\n'
    assert with_incoming("", incoming) == '{"a": 1}\n{"b": 2}\n'
    assert with_incoming('{"x": 0}', {}) == '{"x": 0}\n'
    assert with_incoming("", {}) == ""
