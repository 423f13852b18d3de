"""The figures the docs quote for a raw export (docs/design.md §1): the generator's catalogues and
the real export alike.

    python benchmarks/raw_stats.py                     # data/01_raw
    python benchmarks/raw_stats.py data/01_raw --json  # the same figures as one JSON object

Reading. The four files ``users.jsonl``, ``artists.jsonl``, ``tracks.jsonl`` and
``sessions.jsonl`` of RAW_DIR (not ``incoming/``, not ``synthetic_truth/``) are JSON Lines. A
line that is not one JSON object (truncated, several objects, an array, text) is skipped and
counted, per file, as unparsable; blank lines are ignored. Nothing else is cleaned: this
describes the export as written, not what ``data_processing`` keeps. Event types are compared
without case and surrounding spaces, with ``advertisment`` read as ``advertisement``. User and
session ids are integers (a whole number written as text counts; anything else is missing);
track and artist ids are text. Genres are compared without case and surrounding spaces.

The figures:

- **users, artists, tracks**: distinct non-missing ids (``user_id``, ``id``, ``id``) of each
  file. Where an id repeats, its first record is the one used below.
- **events**: parsed records of ``sessions.jsonl``, every event type, repeated lines included.
- **sessions**: distinct ``session_id`` of the events.
- **a play**: a distinct (``session_id``, ``track_id``) pair with at least one ``play`` event
  (both ids present). A track played twice in one session is one play.
- **plays per session**: plays / sessions with at least one play (the mean; also the smallest
  and largest number of plays in such a session).
- **skip share, like share**: the share of plays whose session also has a ``skip`` (a ``like``)
  event of the same track.
- **ads share**: ``advertisement`` events / events.
- **premium share**: users whose ``premium_user`` is true (``true`` or ``1``, also as text) /
  users; a missing flag is not premium.
- **favourite-genre share of plays**: among plays whose user is in ``users.jsonl`` and whose
  track is in ``tracks.jsonl``, the share where a genre of the track's artist (from
  ``artists.jsonl``) is among the user's ``favourite_genres``. The user of a play is the
  ``user_id`` of its play event, or, where that is missing, the first ``user_id`` another event
  of the same session names.
- **favourite-genre share of random pairs**: the same share over every (user, track) pair of
  ``users.jsonl`` × ``tracks.jsonl``, computed exactly: the chance that a user and a track drawn
  uniformly at random match.
- **favourite-genre lift**: the share of plays / the share of random pairs (1.0 when choices
  ignore taste).
- **favourite-genre share of re-paired plays** (and the lift over it): the same share for a user
  and a track drawn independently, each as often as it occurs among those plays: what the plays
  would match if every play's track were handed to a random play's user, so popular genres that
  happen to be favourites do not count as taste. Also exact, not sampled.

The work is pandas and scipy over whole columns: no Python loop over events.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

FILES = ("users", "artists", "tracks", "sessions")
COLUMNS = {
    "users": ["user_id", "favourite_genres", "premium_user"],
    "artists": ["id", "genres"],
    "tracks": ["id", "id_artist"],
    "sessions": ["session_id", "user_id", "track_id", "event_type"],
}
_CHUNK_LINES = 10_000  # lines per parse; a chunk that fails is halved until the bad lines are alone
_PAIRS_PER_PRODUCT = 20_000_000  # user x track pairs per sparse product (random-pair share)


def _parse(lines: list[str]) -> tuple[list[pd.DataFrame], int]:
    """(frames of the lines that parsed, how many did not): one read for a clean chunk, halving
    around the lines pandas cannot read."""
    if not lines:
        return [], 0
    try:
        frame = pd.read_json(io.StringIO("\n".join(lines)), lines=True, dtype=False)
        if len(frame) == len(lines):
            return [frame], 0
    except ValueError:
        pass
    if len(lines) == 1:
        return [], 1
    middle = len(lines) // 2
    first, bad_first = _parse(lines[:middle])
    second, bad_second = _parse(lines[middle:])
    return first + second, bad_first + bad_second


def read_jsonl(path: Path, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """(the records of a JSON Lines file with ``columns``, the number of unparsable lines)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = pd.Series(text.split("\n"), dtype="string").str.strip()
    lines = lines[lines != ""]
    objects = lines.str.startswith("{") & lines.str.endswith("}")
    frames, bad = [], int((~objects).sum())
    candidates = lines[objects].tolist()
    for start in range(0, len(candidates), _CHUNK_LINES):
        parsed, failed = _parse(candidates[start : start + _CHUNK_LINES])
        frames += parsed
        bad += failed
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame.reindex(columns=columns), bad


def read_export(raw_dir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """({file: records}, {file: unparsable lines}) of the four raw files."""
    tables, unparsable = {}, {}
    for name in FILES:
        tables[name], unparsable[name] = read_jsonl(raw_dir / f"{name}.jsonl", COLUMNS[name])
    return tables, unparsable


def _int_ids(values: pd.Series) -> pd.Series:
    """Whole numbers (also written as text) up to 2^53, the rest missing."""
    numbers = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
    whole = (np.floor(numbers) == numbers) & (numbers.abs() <= 2**53)
    return numbers.where(whole).astype("Int64")


def _text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.where(text != "")


def _genre_pairs(ids: pd.Series, genres: pd.Series) -> pd.DataFrame:
    """(id, genre) rows, one per genre in each id's list; lower-case, without repeats."""
    pairs = pd.DataFrame({"id": ids, "genre": genres}).explode("genre")
    pairs["genre"] = _text(pairs["genre"]).str.lower()
    return pairs.dropna().drop_duplicates()


def _incidence(pairs: pd.DataFrame, ids: pd.Index, genres: pd.Index) -> sparse.csr_matrix:
    """A 0/1 matrix, ``ids`` x ``genres``, of the (id, genre) pairs."""
    rows, cols = ids.get_indexer(pairs["id"]), genres.get_indexer(pairs["genre"])
    keep = (rows >= 0) & (cols >= 0)
    data = np.ones(int(keep.sum()), dtype=np.float32)
    shape = (len(ids), len(genres))
    return sparse.csr_matrix((data, (rows[keep], cols[keep])), shape=shape)


def entities(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Users, artists and tracks: typed ids, the first record of each id."""
    users = tables["users"].assign(user_id=_int_ids(tables["users"]["user_id"]))
    artists = tables["artists"].assign(id=_text(tables["artists"]["id"]))
    tracks = tables["tracks"].assign(
        id=_text(tables["tracks"]["id"]), id_artist=_text(tables["tracks"]["id_artist"])
    )
    return {
        "users": users.dropna(subset=["user_id"]).drop_duplicates("user_id"),
        "artists": artists.dropna(subset=["id"]).drop_duplicates("id"),
        "tracks": tracks.dropna(subset=["id"]).drop_duplicates("id"),
    }


def typed_events(sessions: pd.DataFrame) -> pd.DataFrame:
    events = pd.DataFrame(
        {
            "session_id": _int_ids(sessions["session_id"]),
            "user_id": _int_ids(sessions["user_id"]),
            "track_id": _text(sessions["track_id"]),
            "event_type": _text(sessions["event_type"]).str.lower(),
        }
    )
    events["event_type"] = events["event_type"].replace({"advertisment": "advertisement"})
    return events


def plays_of(events: pd.DataFrame) -> pd.DataFrame:
    """One row per play (session, track), with its user, skipped and liked."""
    paired = events.dropna(subset=["session_id", "track_id"])
    plays = paired[paired["event_type"] == "play"].drop_duplicates(["session_id", "track_id"])
    session_user = events.dropna(subset=["session_id"]).groupby("session_id")["user_id"].first()
    plays = plays.assign(user_id=plays["user_id"].fillna(plays["session_id"].map(session_user)))
    keys = pd.MultiIndex.from_frame(plays[["session_id", "track_id"]])
    for kind, column in (("skip", "skipped"), ("like", "liked")):
        marked = paired.loc[paired["event_type"] == kind, ["session_id", "track_id"]]
        plays[column] = keys.isin(pd.MultiIndex.from_frame(marked))
    return plays.reset_index(drop=True)


def genre_match(plays: pd.DataFrame, known: dict[str, pd.DataFrame]) -> dict[str, float | int]:
    """The favourite-genre share of plays, of random (user, track) pairs, and their ratio."""
    users, tracks = known["users"], known["tracks"]
    user_genres = _genre_pairs(users["user_id"], users["favourite_genres"])
    artist_genres = _genre_pairs(known["artists"]["id"], known["artists"]["genres"])
    track_genres = (
        tracks[["id", "id_artist"]]
        .merge(artist_genres.rename(columns={"id": "id_artist"}), on="id_artist")
        .drop(columns="id_artist")
    )
    genres = pd.Index(pd.concat([user_genres["genre"], track_genres["genre"]]).unique())
    user_index, track_index = pd.Index(users["user_id"]), pd.Index(tracks["id"])
    by_user = _incidence(user_genres, user_index, genres)
    by_track = _incidence(track_genres, track_index, genres)

    u, t = user_index.get_indexer(plays["user_id"]), track_index.get_indexer(plays["track_id"])
    known_play = (u >= 0) & (t >= 0)
    u, t = u[known_play], t[known_play]
    shared = np.asarray(by_user[u].multiply(by_track[t]).sum(axis=1)).ravel()
    play_share = float(np.mean(shared > 0)) if len(u) else float("nan")

    # Every (user, track) pair, a block of users at a time: how many match, and the match
    # chance of a user and a track each drawn as often as they are played.
    user_weight = np.bincount(u, minlength=len(user_index)) / max(len(u), 1)
    track_weight = np.bincount(t, minlength=len(track_index)) / max(len(t), 1)
    matched, matched_weight = 0, 0.0
    step = max(1, _PAIRS_PER_PRODUCT // max(len(track_index), 1))
    for start in range(0, len(user_index), step):
        block = (by_user[start : start + step] @ by_track.T).tocsr()
        block.data[:] = 1.0
        matched += block.nnz
        matched_weight += float(user_weight[start : start + step] @ (block @ track_weight))
    pairs = len(user_index) * len(track_index)
    random_share = matched / pairs if pairs else float("nan")
    matched_share = matched_weight if len(u) else float("nan")
    return {
        "known_plays": len(u),
        "favourite_genre_share_of_plays": play_share,
        "favourite_genre_share_of_random_pairs": random_share,
        "favourite_genre_lift": play_share / random_share if random_share else float("nan"),
        "favourite_genre_share_of_repaired_plays": matched_share,
        "favourite_genre_lift_over_repaired_plays": (
            play_share / matched_share if matched_share else float("nan")
        ),
    }


def raw_stats(raw_dir: Path) -> dict:
    """Every figure of the module docstring for the export in ``raw_dir``."""
    tables, unparsable = read_export(raw_dir)
    known = entities(tables)
    events = typed_events(tables["sessions"])
    plays = plays_of(events)
    per_session = plays.groupby("session_id").size()
    premium = _text(known["users"]["premium_user"]).str.lower().isin(["true", "1"])

    def share(mask: pd.Series) -> float:
        return float(mask.mean()) if len(mask) else float("nan")

    return {
        "raw_dir": str(raw_dir),
        "unparsable_lines": unparsable,
        "users": len(known["users"]),
        "artists": len(known["artists"]),
        "tracks": len(known["tracks"]),
        "events": len(events),
        "sessions": int(events["session_id"].nunique()),
        "plays": len(plays),
        "sessions_with_plays": len(per_session),
        "plays_per_session": share(per_session),
        "plays_per_session_min": int(per_session.min()) if len(per_session) else 0,
        "plays_per_session_max": int(per_session.max()) if len(per_session) else 0,
        "skip_share": share(plays["skipped"]),
        "like_share": share(plays["liked"]),
        "ads_share": share(events["event_type"] == "advertisement"),
        "premium_share": share(premium.fillna(False)),
        **genre_match(plays, known),
    }


def report(stats: dict) -> str:
    """The figures as the docs quote them."""
    bad = ", ".join(f"{name}.jsonl {n:,}" for name, n in stats["unparsable_lines"].items())
    return "\n".join(
        [
            f"raw export {stats['raw_dir']} (unparsable lines skipped: {bad})",
            f"{stats['users']:,} users, {stats['artists']:,} artists, {stats['tracks']:,} tracks,"
            f" {stats['events']:,} events in {stats['sessions']:,} sessions",
            f"{stats['plays_per_session']:.1f} plays per session"
            f" ({stats['plays_per_session_min']} to {stats['plays_per_session_max']};"
            f" {stats['plays']:,} plays = played (session, track) pairs"
            f" in {stats['sessions_with_plays']:,} sessions)",
            f"skips on {stats['skip_share']:.1%} and likes on {stats['like_share']:.1%}"
            " of played (session, track) pairs",
            f"ads {stats['ads_share']:.1%} of events",
            f"premium users {stats['premium_share']:.1%}",
            f"{stats['favourite_genre_share_of_plays']:.1%} of plays match a favourite genre"
            f" against {stats['favourite_genre_share_of_random_pairs']:.1%} for random"
            f" (user, track) pairs: favourite-genre lift {stats['favourite_genre_lift']:.2f}x"
            f" ({stats['known_plays']:,} plays of known users and tracks)",
            f"against plays re-paired at random (each user and track as often as played):"
            f" {stats['favourite_genre_share_of_repaired_plays']:.1%},"
            f" lift {stats['favourite_genre_lift_over_repaired_plays']:.2f}x",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", nargs="?", default="data/01_raw", type=Path)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    missing = [f"{name}.jsonl" for name in FILES if not (args.raw_dir / f"{name}.jsonl").is_file()]
    if missing:
        print(f"{args.raw_dir}: no {', '.join(missing)}", file=sys.stderr)
        return 2
    stats = raw_stats(args.raw_dir)
    print(json.dumps(stats, indent=2) if args.json else report(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
