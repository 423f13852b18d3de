"""A ratings-style world: a raw export (design §1) that the project's generator did not write.

    python benchmarks/rating_world.py --out /tmp/rating_world/data/01_raw
    python benchmarks/rating_world.py --users 1000 --tracks 1700 --seed 0 --out DIR [--force]

It writes ``users.jsonl``, ``artists.jsonl``, ``tracks.jsonl`` and ``sessions.jsonl`` to DIR
(and nothing else: no ``.generated.sha256`` sidecar, no synthetic truth), so the project treats
them as a user's own export: ``kedro run --pipelines from_raw`` runs everything on them
(docs/your-own-data.md). It refuses to replace existing files unless ``--force``.

Why. ``src/pozytywka/synthetic/`` draws every play as a softmax choice over a hidden user-track
affinity and turns the same affinity into skips and likes. Models that fit that generator could
be fitting its formula. This world is built the way public rating sets look instead: users rate
items they chose, in bursts, with item-to-item structure that no global low-rank taste explains.
Nothing here is fitted to any particular public data set; the constants below are round numbers.

The process (every draw from one ``numpy`` generator seeded by ``--seed``):

* **Catalogue.** Tracks come in *albums* (1 to 12 tracks, 5 on average) of artists (1-3
  albums each). Each album belongs to one of K *communities* (scenes; K ~ sqrt(albums), at most
  12). Album exposure is log-normal (sigma 1.5), tracks within an album log-normal (sigma 0.8)
  with the first track a "single" (x2.5): item popularity is heavy-tailed (the top 10 % of
  tracks get about half of all ratings; some tracks none).
* **Users.** Activity is 20 + log-normal, capped at 700 (and at 40 % of the catalogue): most
  users rate a few dozen tracks, a few rate hundreds. Taste is a sparse Dirichlet(0.25) mixture
  over communities plus a vector in a 6-dimensional "mood" space that cuts across communities
  (albums and tracks have one too), and every (user, album) pair has its own affinity ``z``
  (N(0, 1), independent: no low-rank model can explain it).
* **What a user rates** (missing not at random, as in rating data): a user *visits* albums one
  after another, choosing an album with the softmax of ``1.3 log exposure + 0.3 log(community
  share + 0.1) + 0.8 mood(u).mood(album) + 0.6 z``; each visit lowers that album's logit by 1.5
  (users move on, though they come back), and rates 1 + Binomial(size - 1, f) of its unrated
  tracks, the more exposed first (f ~ Beta(1.5, 2.5): how far the user tends to go through an
  album). Tracks rated together from one album are the neighbourhood signal an item-item model
  (EASE) reads off directly and a factor model smooths over; exposure is what popularity gets;
  communities and the mood space are the low-rank signal factor models (ALS, LightFM) share
  across albums and users, and it reaches albums the user never touched.
* **The rating** of a rated track is a latent score ``0.8 z + 0.6 mood(u).mood(t) + quality(t)
  + bias(u) + noise`` (quality, bias sd 0.5, noise sd 0.7), cut at its 8/20/55/80 % quantiles
  into 1-5 stars: about 45 % of ratings are 4-5 stars, 20 % 1-2.
* **Events.** A rated track is one ``play``; 4-5 stars add a ``like`` during the play, 1-2 stars
  a ``skip`` seconds after it (design §1's event semantics), 3 stars nothing. A user's ratings,
  in visit order, fall into sessions of 1 + Poisson(3.5) tracks spread over the user's active
  period (a join day in the first 80 % of eight months from 2024-01-01, then 30-100 % of the
  time left, at least a week); non-premium users (80 %) hear an ``advertisement`` at the start
  of half their sessions. Timestamps are ``YYYY-MM-DDTHH:MM:SS.mmm`` UTC; each (user, track)
  pair occurs once.
* **Side information, weakly informative.** An artist's genres (0-3, fine-grained, e.g. "lo-fi
  jazz") come from its community's pool with probability 0.6, else from anywhere; half the
  users name 1-3 favourite genres, half of them from their main community's pool. Audio
  features are broad Beta draws whose means move a little with community and album (shifts of
  sd 0.06 and 0.04 against a spread of ~0.19); the ``popularity`` field is the track's exposure
  rank blurred by noise of the same size; duration, key, loudness, tempo, explicit and release
  date (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``, one per album) carry little or nothing.

The export is clean by construction: ``data_processing`` should drop, repair and normalise
nothing (tests/test_rating_world.py checks a small one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FILES = ("users", "artists", "tracks", "sessions")
START = np.datetime64("2024-01-01T00:00:00.000", "ms")
DAYS = 240  # about eight months of log
AUDIO = ["danceability", "energy", "speechiness", "acousticness", "instrumentalness"]
AUDIO += ["liveness", "valence"]
AUDIO_MEAN = {  # the catalogue's average of each feature (a broad Beta around it)
    "danceability": 0.58,
    "energy": 0.62,
    "speechiness": 0.12,
    "acousticness": 0.3,
    "instrumentalness": 0.15,
    "liveness": 0.2,
    "valence": 0.48,
}
GENRE_BASES = ["rock", "pop", "jazz", "hip hop", "techno", "folk", "metal", "soul", "reggae"]
GENRE_BASES += ["classical", "house", "punk"]
GENRE_MODIFIERS = ["polish", "indie", "dark", "lo-fi", "nordic", "neo", "acid", "dream"]
GENRE_MODIFIERS += ["modern", "underground", "baltic", "garage"]
WORDS = ["night", "river", "glass", "summer", "echo", "paper", "silver", "north", "dust"]
WORDS += ["gold", "rain", "city", "fire", "velvet", "stone", "blue", "wild", "quiet", "neon"]
CITIES = ["Warszawa", "Kraków", "Łódź", "Wrocław", "Poznań", "Gdańsk", "Szczecin", "Lublin"]
STREETS = ["ul. Długa", "ul. Polna", "ul. Leśna", "ul. Słoneczna", "ul. Krótka", "ul. Lipowa"]
BASE62 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))

# The world's constants: round numbers, set so that popularity, item-item and factor models
# all find something (see the module docstring), not fitted to any data set.
MEAN_ALBUM = 5  # tracks per album, on average (1 to 12)
ALBUM_SIGMA, TRACK_SIGMA, SINGLE_BOOST = 1.5, 0.8, 2.5  # log-normal exposure; first track's boost
MOOD_DIM = 6  # the taste space that cuts across communities
COMMUNITY_ALPHA = 0.25  # Dirichlet concentration of a user's community shares
MAX_ACTIVITY = 700  # ratings of the most active users (also at most 40 % of the catalogue)
# Album choice: logit = EXPOSURE * log(exposure) + COMMUNITY * log(share + FLOOR)
#                       + MOOD_CHOICE * mood(u).mood(album) + AFFINITY * z(u, album)
EXPOSURE, COMMUNITY, FLOOR, MOOD_CHOICE, AFFINITY = 1.3, 0.3, 0.1, 0.8, 0.6
REVISIT = 1.5  # each visit lowers that album's logit for the user (users move on)
DEPTH_A, DEPTH_B = 1.5, 2.5  # Beta: the share of an album's other tracks a visit rates
# Rating: latent score = Z_RATING * z + MOOD_RATING * mood.mood + quality + bias + noise
Z_RATING, MOOD_RATING, QUALITY_SD, BIAS_SD, NOISE_SD = 0.8, 0.6, 0.5, 0.5, 0.7
RATING_QUANTILES = [0.08, 0.20, 0.55, 0.80]  # latent-score cuts between 1|2|3|4|5 stars


def _base62_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 22-character base62 ids."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        for row in BASE62[rng.integers(0, len(BASE62), size=(n - len(ids), 22))]:
            text = "".join(row)
            if text not in seen:
                seen.add(text)
                ids.append(text)
    return ids


def _name(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, words)).title()


def _catalogue(rng: np.random.Generator, n_tracks: int) -> dict:
    """Albums, artists, communities, genres and every track's attributes (as arrays)."""
    sizes: list[int] = []
    while sum(sizes) < n_tracks:
        sizes.append(int(np.clip(rng.poisson(MEAN_ALBUM - 1) + 1, 1, 12)))
    sizes[-1] -= sum(sizes) - n_tracks
    sizes = [s for s in sizes if s > 0]
    n_albums = len(sizes)
    k = int(np.clip(round(np.sqrt(n_albums)), 2, len(GENRE_BASES)))
    album_community = rng.integers(0, k, n_albums)
    album_of = np.repeat(np.arange(n_albums), sizes)
    position = np.concatenate([np.arange(s) for s in sizes])
    album_weight = rng.lognormal(0.0, ALBUM_SIGMA, n_albums)
    track_weight = rng.lognormal(0.0, TRACK_SIGMA, n_tracks)
    track_weight *= np.where(position == 0, SINGLE_BOOST, 1.0)

    # Artists: 1-3 albums each, an artist's albums mostly of one community.
    artist_of_album = np.empty(n_albums, dtype=int)
    order = np.argsort(album_community, kind="stable")
    n_artists, i = 0, 0
    while i < n_albums:
        take = int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
        artist_of_album[order[i : i + take]] = n_artists
        n_artists, i = n_artists + 1, i + take
    artist_community = np.zeros(n_artists, dtype=int)
    artist_community[artist_of_album] = album_community

    pools = []
    for c in range(k):
        mods = rng.choice(GENRE_MODIFIERS, 4, replace=False)
        pools.append([GENRE_BASES[c], *(f"{m} {GENRE_BASES[c]}" for m in mods)])
    every_genre = [g for pool in pools for g in pool]
    artist_genres = []
    for a in range(n_artists):
        genres: set[str] = set()
        for _ in range(int(rng.choice(4, p=[0.05, 0.45, 0.35, 0.15]))):
            home = rng.random() < 0.6
            genres.add(str(rng.choice(pools[artist_community[a]] if home else every_genre)))
        artist_genres.append(sorted(genres))

    # Mood vectors: the community's centre, the album's offset, the track's own.
    centres = rng.normal(0.0, 1.0, (k, MOOD_DIM))
    album_mood = 0.7 * centres[album_community] + rng.normal(0.0, 0.5, (n_albums, MOOD_DIM))
    mood = album_mood[album_of] + rng.normal(0.0, 0.4, (n_tracks, MOOD_DIM))
    return {
        "n_albums": n_albums,
        "n_artists": n_artists,
        "k": k,
        "album_of": album_of,
        "album_sizes": np.array(sizes),
        "album_community": album_community,
        "album_weight": album_weight,
        "track_weight": track_weight,
        "artist_of_album": artist_of_album,
        "artist_genres": artist_genres,
        "pools": pools,
        "every_genre": every_genre,
        "centres": centres,
        "mood": mood,
        "album_mood": album_mood,
        "quality": rng.normal(0.0, QUALITY_SD, n_tracks),
    }


def _track_records(rng: np.random.Generator, cat: dict, track_ids, artist_ids) -> list[dict]:
    """tracks.jsonl: side fields that say little about who rates what."""
    n_tracks, n_albums, k = len(track_ids), cat["n_albums"], cat["k"]
    album_of, community = cat["album_of"], cat["album_community"][cat["album_of"]]
    shift_c = rng.normal(0.0, 0.06, (k, len(AUDIO)))
    shift_a = rng.normal(0.0, 0.04, (n_albums, len(AUDIO)))
    audio = {}
    for j, feature in enumerate(AUDIO):
        mean = np.clip(
            AUDIO_MEAN[feature] + shift_c[community, j] + shift_a[album_of, j], 0.03, 0.97
        )
        audio[feature] = np.round(rng.beta(6 * mean, 6 * (1 - mean)), 3)
    exposure = np.log(cat["album_weight"][album_of] * cat["track_weight"])
    blurred = exposure + rng.normal(0.0, exposure.std(), n_tracks)
    popularity = np.round(15 + 80 * np.argsort(np.argsort(blurred)) / max(n_tracks - 1, 1))
    year = np.clip(2024 - rng.exponential(12.0, n_albums).astype(int), 1955, 2024)
    month, day = rng.integers(1, 13, n_albums), rng.integers(1, 29, n_albums)
    form = rng.choice(3, n_albums, p=[0.2, 0.1, 0.7])
    dates = [
        [f"{y}", f"{y}-{m:02d}", f"{y}-{m:02d}-{d:02d}"][f]
        for y, m, d, f in zip(year, month, day, form, strict=True)
    ]
    tempo_shift = rng.normal(0.0, 8.0, k)
    explicit_rate = rng.uniform(0.02, 0.25, k)
    records = []
    for t in range(n_tracks):
        a = album_of[t]
        records.append(
            {
                "id": track_ids[t],
                "name": _name(rng, int(rng.integers(1, 4))),
                "popularity": int(popularity[t]),
                "duration_ms": int(np.clip(rng.lognormal(np.log(215_000), 0.3), 45_000, 900_000)),
                "explicit": int(rng.random() < explicit_rate[community[t]]),
                "id_artist": artist_ids[cat["artist_of_album"][a]],
                "release_date": dates[a],
                **{f: float(audio[f][t]) for f in AUDIO},
                "key": int(rng.integers(0, 12)),
                "loudness": float(np.round(np.clip(rng.normal(-8.0, 3.5), -40.0, -0.5), 2)),
                "tempo": float(
                    np.round(np.clip(rng.normal(120 + tempo_shift[community[t]], 25), 50, 220), 1)
                ),
            }
        )
    return records


def _rate(rng: np.random.Generator, cat: dict, n_users: int) -> dict:
    """Who rates what, in which order, and how many stars."""
    n_tracks, n_albums, k = len(cat["album_of"]), cat["n_albums"], cat["k"]
    cap = max(20, min(MAX_ACTIVITY, int(0.4 * n_tracks)))
    activity = np.minimum(20 + np.round(rng.lognormal(3.65, 1.1, n_users)).astype(int), cap)
    activity = np.minimum(activity, n_tracks)
    share = rng.dirichlet(np.full(k, COMMUNITY_ALPHA), n_users)
    user_mood = share @ cat["centres"] + rng.normal(0.0, 0.7, (n_users, MOOD_DIM))
    user_bias = rng.normal(0.0, BIAS_SD, n_users)
    depth = rng.beta(DEPTH_A, DEPTH_B, n_users)
    log_exposure = EXPOSURE * np.log(cat["album_weight"])
    album_mood = cat["album_mood"]
    members = [np.flatnonzero(cat["album_of"] == a) for a in range(n_albums)]
    users, tracks, scores, visits = [], [], [], []
    for u in range(n_users):
        z = rng.normal(0.0, 1.0, n_albums)
        logit = log_exposure + COMMUNITY * np.log(share[u, cat["album_community"]] + FLOOR)
        logit = logit + AFFINITY * z + MOOD_CHOICE * album_mood @ user_mood[u] / np.sqrt(MOOD_DIM)
        left = cat["album_sizes"].copy()
        rated = np.zeros(n_tracks, dtype=bool)
        n_visit = 0
        while rated.sum() < activity[u]:
            p = np.where(left > 0, np.exp(logit - logit.max()), 0.0)
            a = int(rng.choice(n_albums, p=p / p.sum()))
            pool = members[a][~rated[members[a]]]
            want = 1 + rng.binomial(len(members[a]) - 1, depth[u])
            take = int(min(want, len(pool), activity[u] - rated.sum()))
            w = cat["track_weight"][pool]
            chosen = rng.choice(pool, take, replace=False, p=w / w.sum())
            rated[chosen] = True
            left[a] -= take
            logit[a] -= REVISIT
            mood = cat["mood"][chosen] @ user_mood[u] / np.sqrt(MOOD_DIM)
            score = Z_RATING * z[a] + MOOD_RATING * mood + cat["quality"][chosen] + user_bias[u]
            users.append(np.full(take, u))
            tracks.append(chosen)
            scores.append(score + rng.normal(0.0, NOISE_SD, take))
            visits.append(np.full(take, n_visit))
            n_visit += 1
    score = np.concatenate(scores)
    stars = 1 + np.searchsorted(np.quantile(score, RATING_QUANTILES), score)
    return {
        "user": np.concatenate(users),
        "track": np.concatenate(tracks),
        "stars": stars,
        "share": share,
        "activity": activity,
    }


def _user_records(rng: np.random.Generator, cat: dict, share: np.ndarray) -> list[dict]:
    records = []
    for u in range(len(share)):
        favourites: set[str] = set()
        if rng.random() < 0.5:
            home = cat["pools"][int(np.argmax(share[u]))]
            for _ in range(int(rng.integers(1, 4))):
                favourites.add(str(rng.choice(home if rng.random() < 0.5 else cat["every_genre"])))
        records.append(
            {
                "user_id": u + 1,
                "name": _name(rng, 2),
                "city": str(rng.choice(CITIES)),
                "street": f"{rng.choice(STREETS)} {int(rng.integers(1, 120))}",
                "favourite_genres": sorted(favourites),
                "premium_user": bool(rng.random() < 0.2),
            }
        )
    return records


def _timestamp(ms: np.datetime64) -> str:
    return str(ms)  # datetime64[ms] prints as YYYY-MM-DDTHH:MM:SS.mmm


def _session_records(
    rng: np.random.Generator, ratings: dict, users: list[dict], tracks: list[dict], track_ids
) -> list[dict]:
    """sessions.jsonl: each user's ratings, in visit order, as timed sessions of events."""
    day_ms = 86_400_000
    events: list[dict] = []
    session_id = 10_000
    user, track, stars = ratings["user"], ratings["track"], ratings["stars"]
    bounds = np.flatnonzero(np.diff(user)) + 1
    for rows in np.split(np.arange(len(user)), bounds):
        u = int(user[rows[0]])
        lengths: list[int] = []
        while sum(lengths) < len(rows):
            lengths.append(1 + int(rng.poisson(3.5)))
        lengths[-1] -= sum(lengths) - len(rows)
        join = rng.uniform(0, 0.8 * DAYS)
        end = join + max(7.0, (DAYS - join) * rng.uniform(0.3, 1.0))
        days = np.sort(rng.uniform(join, min(end, DAYS - 0.1), len(lengths)))
        premium = users[u]["premium_user"]
        for chunk, day in zip(np.split(rows, np.cumsum(lengths)[:-1]), days, strict=True):
            session_id += 1
            clock = START + np.timedelta64(int(day * day_ms), "ms")
            row = {"session_id": session_id, "user_id": u + 1}
            if not premium and rng.random() < 0.5:
                events.append(
                    {
                        **row,
                        "timestamp": _timestamp(clock),
                        "track_id": None,
                        "event_type": "advertisement",
                    }
                )
                clock += np.timedelta64(30_000, "ms")
            for r in chunk:
                t = int(track[r])
                duration = tracks[t]["duration_ms"]
                base = {**row, "track_id": track_ids[t]}
                events.append({**base, "timestamp": _timestamp(clock), "event_type": "play"})
                if stars[r] <= 2:
                    after = int(rng.integers(3_000, 40_000))
                    events.append(
                        {
                            **base,
                            "timestamp": _timestamp(clock + np.timedelta64(after, "ms")),
                            "event_type": "skip",
                        }
                    )
                    clock += np.timedelta64(after + 1_000, "ms")
                    continue
                if stars[r] >= 4:
                    after = int(rng.integers(10_000, duration))
                    events.append(
                        {
                            **base,
                            "timestamp": _timestamp(clock + np.timedelta64(after, "ms")),
                            "event_type": "like",
                        }
                    )
                clock += np.timedelta64(duration + 1_000, "ms")
    # Key order as the contract lists the fields.
    keys = ("session_id", "timestamp", "user_id", "track_id", "event_type")
    return [{key: e[key] for key in keys} for e in events]


def write_rating_world(out: Path, n_users: int = 1000, n_tracks: int = 1700, seed: int = 0) -> dict:
    """Write the four raw files to ``out``; returns the world's figures (what tests check)."""
    if n_users < 1 or n_tracks < 20:
        raise ValueError("need at least 1 user and 20 tracks")
    rng = np.random.default_rng(seed)
    cat = _catalogue(rng, n_tracks)
    track_ids = _base62_ids(rng, n_tracks)
    artist_ids = _base62_ids(rng, cat["n_artists"])
    artists = [
        {"id": artist_ids[a], "name": _name(rng, 2), "genres": cat["artist_genres"][a]}
        for a in range(cat["n_artists"])
    ]
    tracks = _track_records(rng, cat, track_ids, artist_ids)
    ratings = _rate(rng, cat, n_users)
    users = _user_records(rng, cat, ratings["share"])
    sessions = _session_records(rng, ratings, users, tracks, track_ids)
    out.mkdir(parents=True, exist_ok=True)
    for name, records in zip(FILES, (users, artists, tracks, sessions), strict=True):
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (out / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    per_track = np.bincount(ratings["track"], minlength=n_tracks)
    top = np.sort(per_track)[::-1][: max(1, n_tracks // 10)].sum() / per_track.sum()
    return {
        "users": n_users,
        "artists": cat["n_artists"],
        "albums": cat["n_albums"],
        "communities": cat["k"],
        "tracks": n_tracks,
        "ratings": int(len(ratings["stars"])),
        "stars": {s: int((ratings["stars"] == s).sum()) for s in range(1, 6)},
        "events": len(sessions),
        "sessions": int(sessions[-1]["session_id"] - 10_000),
        "likes": int((ratings["stars"] >= 4).sum()),
        "skips": int((ratings["stars"] <= 2).sum()),
        "advertisements": sum(e["event_type"] == "advertisement" for e in sessions),
        "activity_min_max": [int(ratings["activity"].min()), int(ratings["activity"].max())],
        "tracks_never_rated": int((per_track == 0).sum()),
        "top_10pct_tracks_share_of_ratings": round(float(top), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--tracks", type=int, default=1700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="the raw directory to write")
    parser.add_argument("--force", action="store_true", help="replace existing raw files")
    args = parser.parse_args(argv)
    existing = [f"{n}.jsonl" for n in FILES if (args.out / f"{n}.jsonl").exists()]
    if existing and not args.force:
        print(
            f"{args.out} already has {', '.join(existing)}: not replaced (--force)", file=sys.stderr
        )
        return 1
    facts = write_rating_world(args.out, args.users, args.tracks, args.seed)
    print(json.dumps(facts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
