"""benchmarks/raw_stats.py on hand-made exports whose figures are worked out by hand."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "raw_stats.py"


@pytest.fixture(scope="module")
def raw_stats():
    spec = importlib.util.spec_from_file_location("raw_stats", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


USERS = [
    '{"user_id": 1, "name": "Ala", "city": "Lublin", "street": "ul. Leśna 1",'
    ' "favourite_genres": ["Rock"], "premium_user": true}',
    '{"user_id": 2, "name": "Ola", "city": "Gdańsk", "street": "ul. Polna 2",'
    ' "favourite_genres": ["jazz"], "premium_user": false}',
    '{"user_id": 3, "name": "Cut", "favourite_gen',  # truncated: skipped
]
ARTISTS = [
    '{"id": "a1", "name": "R", "genres": ["rock", "polish rock"]}',
    '{"id": "a2", "name": "J", "genres": ["jazz"]}',
    '{"id": "a3", "name": "E", "genres": ["electronic"]}',
]
TRACKS = [
    '{"id": "t1", "name": "One", "popularity": 60, "id_artist": "a1"}',
    '{"id": "t2", "name": "Two", "popularity": 70, "id_artist": "a2"}',
    '{"id": "t3", "name": "Three", "popularity": 80, "id_artist": "a3"}',
]
SESSIONS = [
    '{"session_id": 10, "timestamp": "2024-01-01T10:00:00Z", "user_id": 1, "track_id": "t1",'
    ' "event_type": "play"}',
    # no user_id: the session's (1); the type in upper case
    '{"session_id": 10, "timestamp": "2024-01-01T10:03:00Z", "user_id": null, "track_id": "t2",'
    ' "event_type": "PLAY"}',
    '{"session_id": 10, "timestamp": "2024-01-01T10:03:30Z", "user_id": 1, "track_id": "t1",'
    ' "event_type": "skip"}',
]


def write_export(root: Path, sessions: list[str]) -> Path:
    for name, lines in [
        ("users", USERS),
        ("artists", ARTISTS),
        ("tracks", TRACKS),
        ("sessions", sessions),
    ]:
        (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_three_lines_a_file(raw_stats, tmp_path):
    stats = raw_stats.raw_stats(write_export(tmp_path, SESSIONS))

    assert stats["unparsable_lines"] == {"users": 1, "artists": 0, "tracks": 0, "sessions": 0}
    assert (stats["users"], stats["artists"], stats["tracks"]) == (2, 3, 3)
    assert (stats["events"], stats["sessions"]) == (3, 1)
    # plays: (10, t1) and (10, t2), both in session 10
    assert (stats["plays"], stats["plays_per_session"]) == (2, 2.0)
    assert (stats["plays_per_session_min"], stats["plays_per_session_max"]) == (2, 2)
    assert stats["skip_share"] == 0.5  # t1 skipped, t2 not
    assert stats["like_share"] == 0.0
    assert stats["ads_share"] == 0.0
    assert stats["premium_share"] == 0.5  # user 1 of users 1 and 2
    # user 1 (rock) played t1 (rock, polish rock): a match; t2 (jazz): none
    assert stats["known_plays"] == 2
    assert stats["favourite_genre_share_of_plays"] == 0.5
    # 2 users x 3 tracks: (1, t1) and (2, t2) match
    assert stats["favourite_genre_share_of_random_pairs"] == pytest.approx(2 / 6)
    assert stats["favourite_genre_lift"] == pytest.approx(1.5)
    # re-paired: user 1 always, t1 or t2 half the time each: (1, t1) matches
    assert stats["favourite_genre_share_of_repaired_plays"] == pytest.approx(0.5)
    assert stats["favourite_genre_lift_over_repaired_plays"] == pytest.approx(1.0)


def test_dirty_lines_are_skipped_and_counted(raw_stats, tmp_path, capsys):
    sessions = [
        '{"session_id": 20, "user_id": 2, "track_id": "t2", "event_type": "play"}',
        '{"session_id": 20, "user_id": 2, "track_id": "t2", "event_type": "like"}',
        '{"session_id": 20, "user_id": 2, "track_id": null, "event_type": "advertisment"}',
        '{"session_id": "21", "user_id": "2", "track_id": "t3", "event_type": "play"}',
        '{"session_id": 21, "user_id": 2, "track_id": "t3", "event_type": " play "}',  # again
        "not json",
        '{"session_id": 22, "user_id": 2, "track_id": "t1", "event_ty',
        "[1, 2]",
        '{"session_id": 23}{"session_id": 24}',
        "",
    ]
    root = write_export(tmp_path, sessions)
    stats = raw_stats.raw_stats(root)

    assert stats["unparsable_lines"]["sessions"] == 4  # the blank line is not counted
    assert (stats["events"], stats["sessions"]) == (5, 2)
    assert (stats["plays"], stats["plays_per_session"]) == (2, 1.0)  # (20, t2), (21, t3)
    assert (stats["skip_share"], stats["like_share"]) == (0.0, 0.5)
    assert stats["ads_share"] == pytest.approx(1 / 5)
    assert stats["favourite_genre_share_of_plays"] == 0.5  # user 2 (jazz): t2 yes, t3 no

    assert raw_stats.main([str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 5
    assert raw_stats.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "sessions.jsonl 4" in out
    assert "1.0 plays per session" in out
    assert "ads 20.0% of events" in out


def test_missing_file(raw_stats, tmp_path, capsys):
    assert raw_stats.main([str(tmp_path)]) == 2
    assert "no users.jsonl" in capsys.readouterr().err
