"""Cleaning: every defect kind is counted and handled, valid variants are only normalised, and no
good record is lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pozytywka.pipelines.data_processing import nodes
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
T1, T2, T3, T4, T5, T6, T7 = (str(i) * 22 for i in range(1, 8))
CATEGORIES = ("dropped", "repaired", "normalised")


def jsonl(*records) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def counts(quality: dict, category: str) -> dict[str, int]:
    """The kinds of a category that occurred, with their counts."""
    return {k: v["count"] for k, v in quality[category].items() if v["count"]}


def all_counts(quality: dict) -> dict[str, dict[str, int]]:
    return {category: counts(quality, category) for category in CATEGORIES}


def ev(sid=1, ts="2024-01-01T10:00:00.000", uid=1, tid=T1, et="play", **extra) -> dict:
    return {
        "session_id": sid,
        "timestamp": ts,
        "user_id": uid,
        "track_id": tid,
        "event_type": et,
        **extra,
    }


def track(tid, **overrides):
    base = {
        "id": tid,
        "name": "x",
        "popularity": 60,
        "duration_ms": 200000,
        "explicit": 0,
        "id_artist": A1,
        "release_date": "2001-05-04",
        "danceability": 0.5,
        "energy": 0.5,
        "speechiness": 0.1,
        "acousticness": 0.2,
        "instrumentalness": 0.0,
        "liveness": 0.1,
        "valence": 0.4,
        "key": 5,
        "loudness": -7.0,
        "tempo": 120.0,
    }
    return {**base, **overrides}


@pytest.fixture
def users():
    return clean_users(
        jsonl(
            {
                "user_id": 1,
                "name": "Ann",
                "city": "Łódź",
                "street": "x",
                "favourite_genres": ["rock"],
                "premium_user": False,
            },
            {
                "user_id": 2,
                "name": "Bob",
                "city": "Gdańsk",
                "street": "y",
                "favourite_genres": ["jazz"],
                "premium_user": True,
            },
        )
    )[0]


@pytest.fixture
def artists():
    return clean_artists(
        jsonl(
            {"id": A1, "name": "a", "genres": ["rock"]}, {"id": A2, "name": "b", "genres": ["jazz"]}
        )
    )[0]


@pytest.fixture
def tracks(artists):
    return clean_tracks(jsonl(track(T1), track(T2)), artists)[0]


def test_parse_counts_malformed_lines_and_skips_blank_ones():
    df, rejects = parse_jsonl(
        '{"user_id": 1, "favourite_genres": [], "premium_user": true}\n'
        '\n{"user_id": 2, "favou\n[1, 2]\n',
        "users",
    )
    assert list(df["user_id"]) == [1]
    assert list(rejects["line"]) == [3, 4]
    assert set(rejects["reason"]) == {"malformed_line"}
    assert rejects["raw"].iloc[0] == '{"user_id": 2, "favou'


def test_padded_and_crlf_lines_parse_and_line_numbers_survive_chunks(monkeypatch):
    record = '{"user_id": %d, "favourite_genres": [], "premium_user": true}'
    plain = "".join(record % i + "\n" for i in range(1, 4))
    padded = f"  {record % 1}\t\n\u00a0{record % 2}\n not json\n{record % 3}\r\n"
    monkeypatch.setattr(nodes, "_CHUNK_LINES", 2)  # chunk edges between the lines
    for text, bad_lines in [(plain, []), (padded, [3]), (padded.replace("\n", "\r\n"), [3])]:
        df, rejects = parse_jsonl(text, "users")
        assert list(df["user_id"]) == [1, 2, 3]
        assert list(df["_line"]) == ([1, 2, 3] if not bad_lines else [1, 2, 4])
        assert list(rejects["line"]) == bad_lines
        assert not df["_raw"].str.contains("\r").any()


def test_fast_and_line_by_line_parsing_agree():
    good = jsonl(
        *[
            {
                "session_id": i,
                "timestamp": "2024-01-01T00:00:00.000",
                "user_id": 1,
                "track_id": None if i % 2 else T1,
                "event_type": "play",
            }
            for i in range(5)
        ]
    )
    fast, _ = parse_jsonl(good, "sessions")
    # A line that looks like an object but is not JSON sends the parser line by line.
    slow, rejects = parse_jsonl(good + '{"session_id": }\n', "sessions")
    assert rejects["line"].tolist() == [6]
    cols = ["session_id", "timestamp", "user_id", "track_id", "event_type", "_line"]
    assert (
        fast[cols].astype(object).where(fast[cols].notna(), None).values.tolist()
        == slow[cols].astype(object).where(slow[cols].notna(), None).values.tolist()
    )


def test_a_file_without_a_contract_field_is_refused():
    with pytest.raises(RawSchemaError, match="event_type"):
        parse_jsonl(
            jsonl(
                {
                    "session_id": 1,
                    "timestamp": "2024-01-01T00:00:00.000",
                    "user_id": 1,
                    "track_id": None,
                }
            ),
            "sessions",
        )


def test_users_coercions_and_drops():
    text = jsonl(
        {"user_id": 1, "name": "Ann", "favourite_genres": ["Rock"], "premium_user": False},
        {
            "user_id": 2,
            "name": "Bob",
            "favourite_genres": "jazz, polish hip hop",
            "premium_user": "true",
        },
        {"user_id": None, "name": "Nobody", "favourite_genres": [], "premium_user": False},
        {"user_id": 1, "name": "Ann again", "favourite_genres": [], "premium_user": True},
        {"user_id": 3, "name": "Cy", "favourite_genres": None, "premium_user": "maybe"},
    )
    out, quality, rejected = clean_users(text + text.splitlines()[0] + "\n")
    assert list(out["user_id"]) == [1, 2, 3]
    assert out.loc[1, "favourite_genres"] == ["jazz", "polish hip hop"]
    assert out.loc[0, "favourite_genres"] == ["rock"]
    assert out["premium_user"].tolist() == [False, True, False]
    assert out.loc[0, "name"] == "Ann"  # the first record of a reused id wins
    assert all_counts(quality) == {
        "dropped": {"conflicting_duplicate_id": 1, "duplicate_line": 1, "null_id": 1},
        "repaired": {"type_coerced": 2, "missing_favourite_genres": 1, "invalid_premium_flag": 1},
        "normalised": {},
    }
    assert quality["repaired"]["type_coerced"]["detail"] == {
        "favourite_genres": 1,
        "premium_user": 1,
    }
    assert quality["repaired"]["type_coerced"]["example_lines"] == [2]
    assert quality["dropped"]["duplicate_line"]["example_lines"] == [6]
    assert (
        quality["rows_read"],
        quality["rows_kept"],
        quality["rows_dropped"],
        quality["rows_repaired"],
    ) == (6, 3, 3, 2)
    assert len(rejected) == 3


def test_tracks_out_of_range_values_become_null_and_are_counted(artists):
    text = jsonl(
        track(T1),
        track(T2, popularity=150, danceability=1.5, release_date="2024-13-45"),
        track(T3, popularity="57", id_artist="Z" * 22, explicit=True, release_date="1999"),
        track(None),
        "{not json",
    )
    out, quality, rejected = clean_tracks(text, artists)
    assert list(out["track_id"]) == [T1, T2, T3]
    t2, t3 = out.iloc[1], out.iloc[2]
    assert pd.isna(t2["popularity"]) and pd.isna(t2["danceability"])
    assert t2["energy"] == 0.5 and pd.isna(t2["release_year"])
    assert t3["popularity"] == 57 and pd.isna(t3["artist_id"]) and bool(t3["explicit"])
    assert t3["release_year"] == 1999 and out.iloc[0]["release_year"] == 2001
    assert all_counts(quality) == {
        "dropped": {"null_id": 1, "malformed_line": 1},
        "repaired": {
            "out_of_range": 2,
            "type_coerced": 1,
            "unknown_artist_id": 1,
            "invalid_release_date": 1,
        },
        "normalised": {},
    }
    assert quality["repaired"]["out_of_range"]["detail"] == {"danceability": 1, "popularity": 1}
    assert quality["repaired"]["out_of_range"]["example_lines"] == [2]
    assert quality["repaired"]["unknown_artist_id"]["example_lines"] == [3]
    assert quality["rows_repaired"] == 2
    assert set(rejected["reason"]) == {"null_id", "malformed_line"}
    assert rejected["line"].tolist() == [5, 4]


def test_sessions_every_defect_kind(users, tracks):
    good = [
        ev(),
        ev(ts="2024-01-01T10:01:00.000", et="skip"),
        ev(ts="2024-01-01T10:02:00.000", tid=T2),
        ev(ts="2024-01-01T10:03:00.000", tid=None, et="advertisement"),
        ev(sid=2, uid=2, ts="2024-01-01 11:00:00.500", tid=T2, et="PLAY"),
        ev(sid=2, uid=2, ts="2024-01-01T11:01:00Z", tid=T2, et=" like"),
        ev(sid=2, uid=2, ts="2024-01-01T11:02:00.000+00:00", tid=T1, et="advertisement"),
    ]
    junk = [
        ev(uid=None, sid=3),
        ev(tid=None),
        ev(uid=999),
        ev(tid="9" * 22),
        ev(et="pause"),
        ev(ts="yesterday"),
        ev(sid=None),
        "{broken",
        json.dumps(good[0]),
    ]
    out, quality, rejected = clean_sessions(jsonl(*good, *junk), users, tracks)
    assert len(out) == len(good)
    assert out["event_type"].tolist() == [
        "play",
        "skip",
        "play",
        "advertisement",
        "play",
        "like",
        "advertisement",
    ]
    assert out["track_id"].isna().tolist() == [False, False, False, True, False, False, True]
    assert out.loc[4, "timestamp"] == pd.Timestamp("2024-01-01 11:00:00.500", tz="UTC")
    assert all_counts(quality) == {
        "dropped": {
            "null_user_id": 1,
            "null_track_id": 1,
            "unknown_user_id": 1,
            "unknown_track_id": 1,
            "unknown_event_type": 1,
            "invalid_timestamp": 1,
            "null_session_id": 1,
            "malformed_line": 1,
            "duplicate_line": 1,
        },
        "repaired": {"track_on_non_track_event": 1},
        "normalised": {"event_type_spelling": 2, "timestamp_form": 3},
    }
    assert {k: v["example_lines"] for k, v in quality["dropped"].items() if v["count"]} == {
        "null_user_id": [8],
        "null_track_id": [9],
        "unknown_user_id": [10],
        "unknown_track_id": [11],
        "unknown_event_type": [12],
        "invalid_timestamp": [13],
        "null_session_id": [14],
        "malformed_line": [15],
        "duplicate_line": [16],
    }
    assert quality["rows_read"] == 16 and quality["rows_dropped"] == len(junk) == len(rejected)
    assert rejected["raw"].notna().all()


def test_timestamps_in_any_iso_form_are_kept_and_only_normalised(users, tracks):
    text = jsonl(
        ev(ts="2024-01-01T10:00:00.000"),  # the canonical form
        ev(ts="2024-01-01T10:00:01", tid=T2),
        ev(ts="2024-01-01T10:00:02.123456"),
        ev(ts="2024-01-01T10:00:03Z", tid=T2),
        ev(ts="2024-01-01T12:00:04+02:00"),
        ev(ts="2024-01-01 10:00:05.5", tid=T2),
        ev(ts="2024-01-01T10:00:06.000Z"),
        ev(ts="01/01/2024 10:00"),
        ev(ts="2024-01-01T25:00:00"),
    )
    out, quality, rejected = clean_sessions(text, users, tracks)
    start = pd.Timestamp("2024-01-01 10:00", tz="UTC")
    assert out["timestamp"].tolist() == [
        start + pd.Timedelta(seconds=s) for s in [0, 1, 2.123456, 3, 4, 5.5, 6]
    ]
    assert all_counts(quality) == {
        "dropped": {"invalid_timestamp": 2},
        "repaired": {},
        "normalised": {"timestamp_form": 6},
    }
    assert quality["normalised"]["timestamp_form"]["example_lines"] == [2, 3, 4, 5, 6]
    assert quality["normalised"]["timestamp_form"]["detail"] == {
        "dddd-dd-dd dd:dd:dd.d": 1,
        "dddd-dd-ddTdd:dd:dd": 1,
        "dddd-dd-ddTdd:dd:dd+dd:dd": 1,
        "dddd-dd-ddTdd:dd:dd.dddZ": 1,
        "dddd-dd-ddTdd:dd:dd.dddddd": 1,
        "dddd-dd-ddTdd:dd:ddZ": 1,
    }
    assert quality["dropped"]["invalid_timestamp"]["example_lines"] == [8, 9]
    assert rejected["reason"].tolist() == ["invalid_timestamp"] * 2
    assert (quality["rows_kept"], quality["rows_repaired"], quality["rows_normalised"]) == (7, 0, 6)


def test_release_dates_of_a_year_a_month_or_a_day_are_valid(artists):
    dates = ["1999", "2001-05", "2001-05-04", "2001-13", "2001-02-30", "05/2001", " 2003-07 "]
    ids = [T1, T2, T3, T4, T5, T6, T7]
    out, quality, _ = clean_tracks(
        jsonl(*[track(t, release_date=d) for t, d in zip(ids, dates, strict=True)]), artists
    )
    assert out["release_date"].tolist() == [
        "1999",
        "2001-05",
        "2001-05-04",
        pd.NA,
        pd.NA,
        pd.NA,
        "2003-07",
    ]
    assert out["release_year"].tolist() == [1999, 2001, 2001, pd.NA, pd.NA, pd.NA, 2003]
    assert all_counts(quality) == {
        "dropped": {},
        "repaired": {"invalid_release_date": 3},
        "normalised": {},
    }
    assert quality["repaired"]["invalid_release_date"]["example_lines"] == [4, 5, 6]


def test_event_type_spellings_are_normalised_and_unknown_ones_dropped(users, tracks):
    spellings = [
        "advertisment",
        "ADVERTISEMENT",
        "PLAY",
        "SKIP",
        "LIKE",
        "BUY_PREMIUM",
        " like ",
        "play",
        "pause",
        "pause",
        "Share",
        None,
    ]
    track_of = {"advertisment": None, "ADVERTISEMENT": None, "BUY_PREMIUM": None}
    text = jsonl(
        *[
            ev(ts=f"2024-01-01T10:00:{i:02d}.000", et=et, tid=track_of.get(et, T1))
            for i, et in enumerate(spellings)
        ]
    )
    out, quality, rejected = clean_sessions(text, users, tracks)
    assert out["event_type"].tolist() == [
        "advertisement",
        "advertisement",
        "play",
        "skip",
        "like",
        "buy_premium",
        "like",
        "play",
    ]
    assert all_counts(quality) == {
        "dropped": {"unknown_event_type": 3, "null_event_type": 1},
        "repaired": {},
        "normalised": {"event_type_spelling": 7},
    }
    spelling = quality["normalised"]["event_type_spelling"]
    assert spelling["example_lines"] == [1, 2, 3, 4, 5]
    assert spelling["detail"] == {s: 1 for s in sorted(spellings[:7])}
    unknown = quality["dropped"]["unknown_event_type"]
    assert unknown["detail"] == {"pause": 2, "Share": 1}
    assert unknown["example_lines"] == [9, 10, 11]
    assert rejected["line"].tolist() == [9, 10, 11, 12]


def test_a_null_user_id_is_recovered_from_its_session_only_when_unambiguous(users, tracks):
    text = jsonl(
        ev(sid=1, uid=1),
        ev(sid=1, uid=None, ts="2024-01-01T10:01:00.000", et="skip"),
        ev(sid=2, uid=None),  # alone in its session: impossible
        ev(sid=3, uid=1),
        ev(sid=3, uid=2, ts="2024-01-01T10:01:00.000", tid=T2),
        ev(sid=3, uid=None, ts="2024-01-01T10:02:00.000", et="skip"),  # two users: ambiguous
        ev(sid=4, uid=999),
        ev(sid=4, uid=None, ts="2024-01-01T10:01:00.000"),  # 999 unknown
        # An event dropped for another reason still says whose session it is.
        ev(sid=5, uid=2, et="pause"),
        ev(sid=5, uid=None, ts="2024-01-01T10:01:00.000"),
    )
    out, quality, rejected = clean_sessions(text, users, tracks)
    assert out[["session_id", "user_id"]].values.tolist() == [
        [1, 1],
        [1, 1],
        [3, 1],
        [3, 2],
        [5, 2],
    ]
    assert all_counts(quality) == {
        "dropped": {
            "null_user_id": 2,
            "null_user_id_ambiguous": 1,
            "unknown_user_id": 1,
            "unknown_event_type": 1,
        },
        "repaired": {"user_id_from_session": 2, "session_user_conflict": 1},
        "normalised": {},
    }
    assert quality["repaired"]["user_id_from_session"]["example_lines"] == [2, 10]
    assert quality["repaired"]["session_user_conflict"]["example_lines"] == [5]
    assert quality["dropped"]["null_user_id"]["example_lines"] == [3, 8]
    assert quality["dropped"]["null_user_id_ambiguous"]["example_lines"] == [6]
    assert dict(zip(rejected["line"], rejected["reason"], strict=True)) == {
        3: "null_user_id",
        6: "null_user_id_ambiguous",
        7: "unknown_user_id",
        8: "null_user_id",
        9: "unknown_event_type",
    }


def test_extra_keys_are_ignored_and_counted_never_dropped(users, tracks, monkeypatch):
    times = [f"2024-01-01T10:00:0{i}.000" for i in range(5)]
    # The same key with one type on every line: Arrow's fast reader takes the file...
    same_type = jsonl(*[ev(ts=t, id=-1) for t in times])
    # ... with types that change, a null-valued key and a key named like an internal column.
    mixed = jsonl(
        ev(ts=times[0], id=-1),
        ev(ts=times[1], id="x"),
        ev(ts=times[2], note=None),
        ev(ts=times[3]),
        ev(ts=times[4], _line=99),
    )
    out_mixed, q_mixed, rej_mixed = clean_sessions(mixed, users, tracks)

    def no_slow_path(lines):
        raise AssertionError("parsed line by line")

    monkeypatch.setattr(nodes, "_python_records", no_slow_path)
    out_same, q_same, rej_same = clean_sessions(same_type, users, tracks)
    pd.testing.assert_frame_equal(out_same, out_mixed)
    assert len(out_mixed) == 5 and rej_mixed.empty and rej_same.empty
    assert out_mixed["timestamp"].dt.second.tolist() == [0, 1, 2, 3, 4]
    assert all_counts(q_same) == {"dropped": {}, "repaired": {}, "normalised": {"extra_field": 5}}
    assert all_counts(q_mixed) == {"dropped": {}, "repaired": {}, "normalised": {"extra_field": 4}}
    assert q_mixed["normalised"]["extra_field"]["example_lines"] == [1, 2, 3, 5]
    assert q_mixed["normalised"]["extra_field"]["detail"] == {"id": 2, "_line": 1, "note": 1}
    assert q_same["normalised"]["extra_field"]["detail"] == {"id": 5}
    monkeypatch.undo()
    users_out, q_users, _ = clean_users(
        jsonl({"user_id": 7, "id": -1, "favourite_genres": ["rock"], "premium_user": True})
    )
    assert users_out["user_id"].tolist() == [7] and users_out["premium_user"].tolist() == [True]
    assert all_counts(q_users) == {"dropped": {}, "repaired": {}, "normalised": {"extra_field": 1}}


def test_invalid_artists_are_dropped_and_their_tracks_kept_with_the_artist_unknown():
    artists, q_artists, _ = clean_artists(
        jsonl(
            {"id": A1, "name": "a", "genres": ["rock"]},
            {"id": "short", "name": "b", "genres": []},
            {"id": None, "name": "c", "genres": []},
        )
    )
    assert artists["artist_id"].tolist() == [A1]
    assert all_counts(q_artists) == {
        "dropped": {"invalid_id": 1, "null_id": 1},
        "repaired": {},
        "normalised": {},
    }
    assert q_artists["dropped"]["invalid_id"]["example_lines"] == [2]
    tracks, q_tracks, _ = clean_tracks(
        jsonl(track(T1), track(T2, id_artist="short"), track(T3, id_artist=None)), artists
    )
    assert tracks["track_id"].tolist() == [T1, T2, T3]
    assert tracks["artist_id"].tolist() == [A1, pd.NA, pd.NA]
    assert all_counts(q_tracks) == {
        "dropped": {},
        "repaired": {"unknown_artist_id": 1, "null_artist_id": 1},
        "normalised": {},
    }
    assert q_tracks["repaired"]["unknown_artist_id"]["example_lines"] == [2]


def real_style_export() -> tuple[str, str, str, str]:
    """A clean export written the way the service writes it: every form valid, nothing wrong."""
    users = jsonl(
        {
            "user_id": 1,
            "name": "Ann",
            "city": "Łódź",
            "street": "x",
            "favourite_genres": ["rock"],
            "premium_user": False,
            "id": -1,
        },
        {
            "user_id": 2,
            "name": "Bob",
            "city": "Gdańsk",
            "street": "y",
            "favourite_genres": ["jazz"],
            "premium_user": True,
        },
    )
    artists = jsonl(
        {"id": A1, "name": "a", "genres": ["rock"]}, {"id": A2, "name": "b", "genres": ["jazz"]}
    )
    tracks = jsonl(
        track(T1, release_date="2001-05"), track(T2, release_date="1999"), track(T3, id_artist=A2)
    )
    sessions = jsonl(
        ev(ts="2024-01-01T10:00:00.123456", tid=None, et="advertisment", id=-1),
        ev(ts="2024-01-01T10:00:05Z", et="PLAY", id=-1),
        ev(ts="2024-01-01T12:00:09+02:00", et="SKIP", id=-1),
        ev(ts="2024-01-01T10:01:00.000", tid=T2),
        ev(ts="2024-01-01T10:02:00", tid=T2, et="LIKE"),
        ev(sid=2, uid=2, ts="2024-01-02T08:00:00.000", tid=T3, et="play"),
        ev(sid=2, uid=2, ts="2024-01-02T08:03:00.000", tid=None, et="BUY_PREMIUM"),
        ev(sid=2, uid=2, ts="2024-01-02T08:04:00.000", tid=None, et="ADVERTISEMENT"),
    )
    return users, artists, tracks, sessions


def clean_all(users_txt: str, artists_txt: str, tracks_txt: str, sessions_txt: str):
    """The four cleaning nodes and the report, as the pipeline chains them."""
    users, uq, urej = clean_users(users_txt)
    artists, aq, arej = clean_artists(artists_txt)
    tracks, tq, trej = clean_tracks(tracks_txt, artists)
    events, sq, srej = clean_sessions(sessions_txt, users, tracks)
    return (users, artists, tracks, events), report_data_quality(
        uq, aq, tq, sq, urej, arej, trej, srej
    )


def test_a_clean_export_in_the_services_own_style_reports_no_defect():
    (users, artists, tracks, events), (report, md, metrics, rejected) = clean_all(
        *real_style_export()
    )
    assert (len(users), len(artists), len(tracks), len(events)) == (2, 2, 3, 8)
    assert events["event_type"].tolist() == [
        "advertisement",
        "play",
        "skip",
        "play",
        "like",
        "play",
        "buy_premium",
        "advertisement",
    ]
    assert tracks["release_year"].tolist() == [2001, 1999, 2001]
    assert set(report["defects"].values()) == {0} and rejected.empty
    for file, s in report["summary"].items():
        assert (s["rows_dropped"], s["rows_repaired"], s["rows_kept"]) == (0, 0, s["rows_read"]), (
            file
        )
    assert {
        f: {k: e["count"] for k, e in kinds.items() if e["count"]}
        for f, kinds in report["normalised"].items()
    } == {
        "users": {"extra_field": 1},
        "artists": {},
        "tracks": {},
        "sessions": {"event_type_spelling": 6, "timestamp_form": 4, "extra_field": 3},
    }
    assert report["summary"]["sessions"]["rows_normalised"] == 6  # lines 4 and 6 are canonical
    assert "## Dropped\n\nUnusable records" in md and md.count("None.") == 2
    assert "| sessions | event_type_spelling | 6 | 1, 2, 3, 5, 7 |" in md


def test_report_keeps_dropped_repaired_and_normalised_apart(users, artists, tracks):
    sessions = jsonl(
        ev(uid=2, tid=T1),
        ev(uid=None, ts="2024-01-01T10:00:01.000", tid=T1, et="SKIP"),
        ev(uid=2, ts="2024-01-01T10:00:02.000", et="pause"),
        "{x",
    )
    (_, _, _, events), (report, md, metrics, rejected) = clean_all(
        jsonl(
            {"user_id": 1, "favourite_genres": ["rock"], "premium_user": False},
            {"user_id": 2, "favourite_genres": "jazz", "premium_user": True},
        ),
        jsonl({"id": A1, "name": "a", "genres": ["rock"]}),
        jsonl(track(T1), track(T2, tempo=-5.0)),
        sessions,
    )
    assert set(report) == {
        "summary",
        "dropped",
        "repaired",
        "normalised",
        "unknown_event_types",
        "defects",
    }
    assert report["summary"]["sessions"] == {
        "rows_read": 4,
        "rows_kept": 2,
        "rows_dropped": 2,
        "rows_repaired": 1,
        "rows_normalised": 1,
    }
    assert report["dropped"]["sessions"]["malformed_line"] == {"count": 1, "example_lines": [4]}
    assert report["dropped"]["sessions"]["unknown_track_id"] == {"count": 0, "example_lines": []}
    assert report["repaired"]["sessions"]["user_id_from_session"]["example_lines"] == [2]
    assert report["repaired"]["tracks"]["out_of_range"] == {
        "count": 1,
        "example_lines": [2],
        "detail": {"tempo": 1},
    }
    assert report["normalised"]["sessions"]["event_type_spelling"]["detail"] == {"SKIP": 1}
    assert report["unknown_event_types"] == {"pause": 1}
    assert {k: v for k, v in report["defects"].items() if v} == {
        "malformed_line": 1,
        "unknown_event_type": 1,
        "user_id_from_session": 1,
        "out_of_range": 1,
        "type_coerced": 1,
    }
    assert "event_type_spelling" not in report["defects"]  # a normalised form is no defect
    assert "| sessions | 4 | 2 | 2 | 1 | 1 |" in md
    assert "| sessions | unknown_event_type | 1 | 3 | pause: 1 |" in md
    assert "| tracks | out_of_range | 1 | 2 | tempo: 1 |" in md
    assert "| sessions | event_type_spelling | 1 | 2 | SKIP: 1 |" in md
    assert "unknown_track_id" not in md  # zero rows are left out of the Markdown
    assert md.index("## Dropped") < md.index("## Repaired") < md.index("## Normalised")
    assert metrics["dq/sessions/dropped/malformed_line"] == {"value": 1.0, "step": 0}
    assert metrics["dq/sessions/repaired/user_id_from_session"]["value"] == 1.0
    assert metrics["dq/sessions/normalised/event_type_spelling"]["value"] == 1.0
    assert metrics["dq/users/dropped/null_id"]["value"] == 0.0
    assert metrics["dq/sessions/rows_kept"]["value"] == 2.0
    assert rejected[["file", "line", "reason"]].values.tolist() == [
        ["sessions", 4, "malformed_line"],
        ["sessions", 3, "unknown_event_type"],
    ]
    assert rejected["raw"].tolist() == ["{x", sessions.splitlines()[2]]


def test_a_chunk_the_fast_reader_cannot_read_is_parsed_alone(users, tracks, monkeypatch):
    text = jsonl(
        *[ev(ts=f"2024-01-01T10:00:0{i}.000") for i in range(5)],
        '{"session_id": }',
        ev(ts="2024-01-01T10:00:07.000", tid=T2),
    )
    whole = clean_sessions(text, users, tracks)
    slow_chunks = []
    python_records = nodes._python_records

    def spy(lines):
        slow_chunks.append(len(lines))
        return python_records(lines)

    monkeypatch.setattr(nodes, "_CHUNK_LINES", 2)
    monkeypatch.setattr(nodes, "_python_records", spy)
    chunked = clean_sessions(text, users, tracks)
    assert slow_chunks == [2]  # only the chunk holding line 6
    pd.testing.assert_frame_equal(chunked[0], whole[0])
    assert chunked[1] == whole[1]
    pd.testing.assert_frame_equal(chunked[2], whole[2])
    assert whole[2]["line"].tolist() == [6] and len(whole[0]) == 6


def test_generated_exports_clean_back_to_the_generated_tables(tiny_catalogue):
    """The dirt the generator injected is found exactly, in the right category, and every
    original record survives."""
    (g_users, g_artists, g_tracks, g_events, *_), dirty, _ = tiny_catalogue
    users_txt, artists_txt, tracks_txt, sessions_txt, manifest = dirty
    (users, artists, tracks, events), (report, _, _, rejected) = clean_all(
        users_txt, artists_txt, tracks_txt, sessions_txt
    )
    for file in ["users", "artists", "tracks", "sessions"]:
        found = {
            category: {k: e["count"] for k, e in report[category][file].items() if e["count"]}
            for category in CATEGORIES
        }
        assert found == manifest[file], file
        s = report["summary"][file]
        assert s["rows_read"] == s["rows_kept"] + s["rows_dropped"], file
        assert (rejected["file"] == file).sum() == s["rows_dropped"], file
    assert manifest["sessions"]["normalised"]["timestamp_form"] > 0
    assert manifest["sessions"]["repaired"]["user_id_from_session"] > 0
    assert users["user_id"].tolist() == g_users["user_id"].tolist()
    assert artists["artist_id"].tolist() == g_artists["id"].tolist()
    assert tracks["track_id"].tolist() == g_tracks["id"].tolist()
    assert len(events) == len(g_events)

    def canonical(ev: pd.DataFrame) -> pd.DataFrame:
        # Some timestamp forms drop the milliseconds, so compare at second precision.
        out = pd.DataFrame(
            {
                "session_id": ev["session_id"].to_numpy(),
                "second": ev["timestamp"].dt.floor("s").to_numpy(),
                "event_type": ev["event_type"].astype(str).to_numpy(),
                "track_id": ev["track_id"].astype(object).fillna("-").to_numpy(),
                "user_id": ev["user_id"].to_numpy(),
            }
        )
        return out.sort_values(list(out.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(canonical(events), canonical(g_events))
    # Values repaired in place come back as generated or as null, never as something else.
    pops = tracks["popularity"].astype("float64").to_numpy()
    same = pd.isna(pops) | (pops == g_tracks["popularity"].to_numpy())
    assert same.all()
    # "YYYY-MM" release dates are valid: their year is kept.
    year = g_tracks["release_date"].str[:4].astype(int).to_numpy()
    kept = tracks["release_year"].notna().to_numpy()
    assert (tracks["release_year"].to_numpy()[kept] == year[kept]).all()
    assert (~kept).sum() == manifest["tracks"]["repaired"]["invalid_release_date"]
    assert tracks["release_date"].str.len().eq(7).sum() > 0


def test_clean_exports_keep_every_value(tiny_catalogue):
    """With no dirt every file takes the fast parser; lists and flags must survive it."""
    (g_users, g_artists, g_tracks, g_events, *_), _, params = tiny_catalogue
    texts = write_dirty_exports(
        g_users, g_artists, g_tracks, g_events, {**params, "dirt": {**params["dirt"], "scale": 0}}
    )
    (users, artists, tracks, events), (report, *_) = clean_all(*texts[:4])
    for category in CATEGORIES:
        assert not any(e["count"] for kinds in report[category].values() for e in kinds.values()), (
            category
        )
    assert users["favourite_genres"].tolist() == g_users["favourite_genres"].tolist()
    assert users["premium_user"].tolist() == g_users["premium_user"].tolist()
    assert artists["genres"].tolist() == g_artists["genres"].tolist()
    assert tracks["tempo"].tolist() == g_tracks["tempo"].tolist()
    assert tracks["explicit"].tolist() == g_tracks["explicit"].astype(bool).tolist()
    assert len(events) == len(g_events)


def test_ids_given_as_text_are_repaired_and_odd_lines_parse_alike(users, tracks):
    rows = [
        {
            "session_id": "1",
            "timestamp": "2024-01-01T10:00:00.000",
            "user_id": 1,
            "track_id": T1,
            "event_type": "play",
        },
        {
            "session_id": 2,
            "timestamp": "2024-01-01T10:00:00.000",
            "user_id": True,
            "track_id": T1,
            "event_type": "play",
        },
        {
            "session_id": 3,
            "timestamp": "2024-01-01T10:00:00.000",
            "user_id": 2.0,
            "track_id": T2,
            "event_type": "play",
        },
        {
            "session_id": 3,
            "timestamp": "2024-01-01T10:01:00.000",
            "user_id": 1,
            "track_id": T2,
            "event_type": "skip",
        },
    ]
    text = "\ufeff" + "  " + jsonl(*rows).replace("\n", " \n", 1)
    out, quality, rejected = clean_sessions(text, users, tracks)
    assert out["session_id"].tolist() == [1, 3, 3]
    assert all_counts(quality) == {
        "dropped": {"invalid_user_id": 1},
        "repaired": {"type_coerced": 1, "session_user_conflict": 1},
        "normalised": {},
    }
    assert quality["repaired"]["type_coerced"]["detail"] == {"session_id": 1}
    assert quality["repaired"]["session_user_conflict"]["example_lines"] == [4]
    assert rejected["line"].tolist() == [2]


def test_merge_listening_events(users, artists, tracks):
    events, _, _ = clean_sessions(
        jsonl(ev(uid=2), ev(uid=2, ts="2024-01-01T10:00:01.000", tid=None, et="buy_premium")),
        users,
        tracks,
    )
    merged = merge_listening_events(events, tracks, artists, users)
    assert len(merged) == 1
    assert merged.loc[0, "artist_name"] == "a" and bool(merged.loc[0, "premium_user"])


def test_incoming_files_follow_the_export_in_name_order():
    incoming = {
        "2026-11-23": lambda: '{"b": 2}\n',
        "2026-11-22": lambda: '{"a": 1}\n\n',
        "2026-11-24": lambda: "",
    }
    assert with_incoming('{"x": 0}\n', incoming) == '{"x": 0}\n{"a": 1}\n{"b": 2}\n'
    assert with_incoming("", incoming) == '{"a": 1}\n{"b": 2}\n'
    export = '{"x": 0}\n{"y": 1}'
    assert with_incoming(export, {}) is export  # nothing incoming: the export, not a copy
    assert with_incoming("", {}) == ""


def test_bytes_that_are_not_utf8_are_read_kept_and_counted(tmp_path):
    """An export with a line in another encoding (cp1250 'ł') or a damaged byte: the run goes
    on, the record is kept with U+FFFD in place of the bytes, and the line is counted."""
    from pozytywka.datasets import GeneratedTextDataset  # noqa: PLC0415

    good = {"user_id": 1, "name": "Ola", "favourite_genres": ["jazz"], "premium_user": False}
    lines = [
        json.dumps(good).encode(),
        json.dumps({**good, "user_id": 2, "name": "Paweł"}, ensure_ascii=False).encode("cp1250"),
        b'{"user_id": 3, "name": "X\xff", "favourite_genres": [], "premium_user": true}',
    ]
    path = tmp_path / "users.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    text = GeneratedTextDataset(filepath=str(path)).load()
    users, quality, rejected = clean_users(text)
    assert users["user_id"].tolist() == [1, 2, 3] and rejected.empty
    assert users["name"].tolist() == ["Ola", "Pawe\ufffd", "X\ufffd"]
    assert quality["repaired"]["invalid_utf8"]["count"] == 2
    assert quality["repaired"]["invalid_utf8"]["example_lines"] == [2, 3]
