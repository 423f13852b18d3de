"""A small export in the service's own raw format, written without the synthetic generator.

It has what real exports have and the generator's catalogue lacks: 50 users, a catalogue most of
which nobody played, choices that ignore taste, `advertisment` and upper-case event types,
timestamps in several ISO-8601 forms, `YYYY-MM` release dates, null user ids their session
recovers, stray keys, users without favourite genres, a constant audio feature and one never
filled in, genres on artists only, a user with a single play, a track of an unknown artist and no
`buy_premium` events; plus a handful of real defects, whose exact counts ``DEFECTS`` gives. No
synthetic truth comes with it.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np

GENRES = ["polish hip hop", "indie rock", "dance pop", "jazz", "techno", "folk", "k-pop"]
N_USERS, N_ARTISTS, N_TRACKS = 50, 60, 900

# Exactly what the writer injects, as (file, kind) -> count; everything else is valid.
DEFECTS = {
    ("sessions", "malformed_line"): 2,
    ("sessions", "duplicate_line"): 1,
    ("sessions", "unknown_event_type"): 1,
    ("sessions", "unknown_track_id"): 1,
    ("tracks", "malformed_line"): 1,
}
# Kept and repaired: a track whose artist is not in artists.jsonl (plus, counted at write time,
# the null user ids their session recovers).
UNKNOWN_ARTIST_TRACKS = 1


def _ids(rng: np.random.Generator, n: int) -> list[str]:
    alphabet = np.array(list(string.digits + string.ascii_letters))
    return ["".join(row) for row in rng.choice(alphabet, size=(n, 22))]


def _timestamp(rng: np.random.Generator, seconds: float) -> str:
    """The same instant in one of the forms the service's exports use."""
    t = np.datetime64("2024-01-01T00:00:00", "us") + np.timedelta64(int(seconds * 1e6), "us")
    text = str(t)  # 2024-03-01T10:11:12.123456
    form = rng.integers(0, 4)
    if form == 1:
        return text[:19]
    if form == 2:
        return text[:23] + "Z"
    if form == 3:  # the same instant written in Warsaw summer time
        local = t + np.timedelta64(2, "h")
        return str(local)[:19] + "+02:00"
    return text


def write_service_export(raw_dir: Path, seed: int = 3) -> dict[str, int]:
    """Write users/artists/tracks/sessions.jsonl to ``raw_dir``; returns facts the tests check."""
    rng = np.random.default_rng(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    user_ids = np.arange(101, 101 + N_USERS)
    premium = rng.random(N_USERS) < 0.18
    users = [
        {
            "user_id": int(u),
            "name": f"User {u}",
            "city": "Kraków",
            "street": "ul. Długa 1",
            "favourite_genres": []
            if i % 10 == 0
            else sorted(rng.choice(GENRES, rng.integers(1, 4), replace=False).tolist()),
            "premium_user": bool(premium[i]),
        }
        for i, u in enumerate(user_ids)
    ]
    artist_ids = _ids(rng, N_ARTISTS)
    artists = [
        {
            "id": a,
            "name": f"Artist {i}",
            "genres": sorted(rng.choice(GENRES, rng.integers(1, 3), replace=False).tolist()),
        }
        for i, a in enumerate(artist_ids)
    ]
    track_ids = _ids(rng, N_TRACKS)
    dates = [str(y) for y in rng.integers(1970, 2024, N_TRACKS)]
    tracks = []
    for i, t in enumerate(track_ids):
        date = [dates[i], f"{dates[i]}-{1 + i % 12:02d}", f"{dates[i]}-{1 + i % 12:02d}-15"][i % 3]
        tracks.append(
            {
                "id": t,
                "name": f"Track {i}",
                "popularity": int(rng.integers(50, 101)),
                "duration_ms": int(rng.integers(90_000, 400_000)),
                "explicit": int(rng.random() < 0.1),
                "id_artist": "Z" * 22 if i == 7 else artist_ids[i % N_ARTISTS],
                "release_date": date,
                **{
                    f: float(np.round(rng.random(), 3))
                    for f in [
                        "danceability",
                        "energy",
                        "speechiness",
                        "acousticness",
                        "instrumentalness",
                        "valence",
                    ]
                },
                "liveness": 0.1,  # a constant column, as some exports have
                "instrumentalness": None,  # a feature the export never filled in
                "key": int(rng.integers(0, 12)),
                "loudness": float(np.round(-rng.random() * 30, 2)),
                "tempo": float(np.round(60 + rng.random() * 120, 1)),
            }
        )

    # Choices follow popularity only (no taste): half the catalogue is never played.
    weights = np.where(np.arange(N_TRACKS) < N_TRACKS // 2, 1.0, 0.0)
    weights /= weights.sum()
    events, session_id, recovered = [], 1000, 0
    for i, user in enumerate(user_ids):
        n_sessions = 1 if i == 0 else int(rng.integers(6, 30))
        for _ in range(n_sessions):
            session_id += 1
            clock = rng.random() * 300 * 86400
            n_plays = 1 if i == 0 else int(rng.integers(1, 6))
            session = []
            if not premium[i] and rng.random() < 0.5:
                session.append(
                    {"event_type": rng.choice(["advertisment", "ADVERTISEMENT"]), "track_id": None}
                )
            for track in rng.choice(track_ids, n_plays, replace=False, p=weights):
                session.append(
                    {
                        "event_type": rng.choice(["play", "PLAY"], p=[0.8, 0.2]),
                        "track_id": str(track),
                    }
                )
                outcome = rng.random()
                if outcome < 0.3:
                    session.append({"event_type": "skip", "track_id": str(track)})
                elif outcome < 0.55:
                    session.append(
                        {"event_type": rng.choice(["like", "LIKE"]), "track_id": str(track)}
                    )
            for event in session:
                clock += rng.integers(5, 240)
                event.update(
                    session_id=session_id, timestamp=_timestamp(rng, clock), user_id=int(user)
                )
                if rng.random() < 0.05:
                    event["id"] = -1  # a stray key of some export versions
            if len(session) > 1 and rng.random() < 0.15:
                session[-1]["user_id"] = None  # the session's other events name the user
                recovered += 1
            events += session
    lines = [json.dumps(e) for e in events]
    lines.insert(10, lines[10])  # duplicate_line
    lines.insert(20, '{"session_id": 1, "timestamp": "2024-02-01T10:00:00", "user_id": 10')
    lines.insert(30, "not json at all")
    lines.append(
        json.dumps(
            {
                "session_id": 999_999,
                "timestamp": "2024-05-05T12:00:00Z",
                "user_id": 101,
                "track_id": None,
                "event_type": "pause",
            }
        )
    )
    lines.append(
        json.dumps(
            {
                "session_id": 999_998,
                "timestamp": "2024-05-05T12:00:00Z",
                "user_id": 101,
                "track_id": "0" * 22,
                "event_type": "play",
            }
        )
    )
    track_lines = [json.dumps(t) for t in tracks]
    track_lines.insert(5, '{"id": "broken", "name": ')
    for name, rows in [
        ("users", [json.dumps(u) for u in users]),
        ("artists", [json.dumps(a) for a in artists]),
        ("tracks", track_lines),
        ("sessions", lines),
    ]:
        (raw_dir / f"{name}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {
        "events": len(events),
        "recoverable_null_user_ids": recovered,
        "advertisements": sum(e["event_type"].lower().startswith("advert") for e in events),
    }
