"""Vectorised generator of a synthetic Pozytywka catalogue and its hidden ground truth.

The story the data follows (every step is numpy over whole arrays, never a loop over events):

* genres come in families; artists belong to a family and carry 1-3 fine-grained genres;
* every genre, artist, track and user has a latent taste vector: a track's vector is its
  artist's plus noise plus a projection of its (genre-dependent) audio features; a user's vector
  mixes the genres they name as favourites with a personal component;
* the hidden affinity of user u to track t is ``(x_u . y_t) / scale + quality_t``, standardised;
* each play is a choice: the app surfaces ``candidates_per_play`` tracks drawn by exposure
  (long-tailed popularity) and the user picks one with probability ``softmax(choice_signal * a)``;
* a played track is skipped with ``sigmoid(alpha_skip + skip_bias_u - outcome_signal * a)`` and,
  when not skipped, liked with ``sigmoid(alpha_like + outcome_signal * a)``; the intercepts are
  calibrated so the realised rates meet the configured ones;
* non-premium users hear ads; a few of them buy premium during the year and hear none after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from tqdm.auto import tqdm

from pozytywka.contract import AUDIO_FEATURES

from .truth import like_if_listened, skip_probability_of
from .vocabulary import (
    CITIES,
    FAMILY_AUDIO_PROFILE,
    FAMILY_WEIGHTS,
    FIRST_NAMES,
    GENRE_FAMILIES,
    LAST_NAMES,
    NAME_WORDS,
    STREETS,
)

logger = logging.getLogger(__name__)

BASE62 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
ID_LENGTH = 22
_CHUNK = 200_000  # plays scored at once: bounds memory at about chunk * candidates * factors
AD_NS = 30_000_000_000  # an ad takes 30 s before the track it precedes


@dataclass
class SyntheticCatalogue:
    """Clean generated tables plus the hidden truth that produced them."""

    users: pd.DataFrame
    artists: pd.DataFrame
    tracks: pd.DataFrame
    events: pd.DataFrame
    user_truth: pd.DataFrame
    track_truth: pd.DataFrame
    truth_params: dict


def base62_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct random 22-character base62 ids, as Spotify-style ids look."""
    ids = np.empty(0, dtype=f"<U{ID_LENGTH}")
    while len(ids) < n:
        chars = BASE62[rng.integers(0, len(BASE62), size=(n - len(ids), ID_LENGTH))]
        ids = np.unique(np.concatenate([ids, chars.view(f"<U{ID_LENGTH}").ravel()]))
    return rng.permutation(ids)[:n]


def _calibrate_intercept(scores: np.ndarray, target: float, sample: int = 200_000) -> float:
    """Intercept ``c`` with ``mean(sigmoid(c + scores)) == target`` (bisection; mean is monotone).

    Solved on an evenly spaced subsample: the mean of 200k scores is exact to about 1e-3.
    """
    if len(scores) > sample:
        scores = scores[:: len(scores) // sample]
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if expit(mid + scores).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table: O(1) draws from a discrete distribution (vs a binary search)."""
    n = len(weights)
    prob = weights / weights.sum() * n
    alias = np.arange(n)
    small = list(np.flatnonzero(prob < 1.0))
    large = list(np.flatnonzero(prob >= 1.0))
    while small and large:
        s, g = small.pop(), large.pop()
        alias[s] = g
        prob[g] -= 1.0 - prob[s]
        (small if prob[g] < 1.0 else large).append(g)
    prob[small + large] = 1.0  # numerical leftovers
    return prob, alias


def _alias_draw(rng: np.random.Generator, table, size) -> np.ndarray:
    prob, alias = table
    idx = rng.integers(0, len(prob), size=size)
    return np.where(rng.random(size, dtype=np.float32) < prob[idx], idx, alias[idx])


def _names(rng: np.random.Generator, n: int, words: int) -> np.ndarray:
    parts = [rng.choice(NAME_WORDS, size=n) for _ in range(words)]
    out = parts[0].astype(object)
    for p in parts[1:]:
        out = out + " " + p
    return out


def _genre_tables(rng: np.random.Generator, n_factors: int):
    families = list(GENRE_FAMILIES)
    genres = [g for f in families for g in GENRE_FAMILIES[f]]
    genre_family = np.array([i for i, f in enumerate(families) for _ in GENRE_FAMILIES[f]])
    family_vec = rng.normal(size=(len(families), n_factors))
    genre_vec = family_vec[genre_family] + 0.6 * rng.normal(size=(len(genres), n_factors))
    return families, np.array(genres, dtype=object), genre_family, genre_vec


def _pick_genres_within(rng, family_of_row, genre_family, k_per_row, k_max):
    """For each row pick ``k_per_row`` distinct genres of its family (first one is primary).

    Returns genre indices, ``-1`` padded to ``k_max`` columns; a family with fewer genres than
    asked for gives all it has.
    """
    n = len(family_of_row)
    by_family = [np.flatnonzero(genre_family == f) for f in range(genre_family.max() + 1)]
    sizes = np.array([len(g) for g in by_family])
    row_size = sizes[family_of_row][:, None]
    # A random permutation of each row's family genres, truncated to k_max.
    width = max(int(sizes.max()), k_max)
    keys = rng.random((n, width))
    keys[np.arange(width)[None, :] >= row_size] = np.inf
    order = np.argsort(keys, axis=1)[:, :k_max]
    offsets = np.cumsum(np.concatenate([[0], sizes]))[:-1]
    flat = np.concatenate(by_family)
    picked = flat[offsets[family_of_row][:, None] + np.minimum(order, row_size - 1)]
    wanted = np.minimum(k_per_row[:, None], row_size)
    picked[np.arange(k_max)[None, :] >= wanted] = -1
    return picked


TRUTH_FORMULA = (
    "a = ((x_u.y_t)/sqrt(n_factors)/dot_scale + quality_t - affinity_mean)"
    " / affinity_std; p_skip = sigmoid(alpha_skip + skip_bias_u - outcome_signal*a);"
    " p_like = (1 - p_skip) * sigmoid(alpha_like + outcome_signal*a);"
    " p_choose ~ exp(exposure_logit_t) * exp(choice_signal*a)"
)


@dataclass
class _Genres:
    """The genre vocabulary: families, fine-grained genres and their latent vectors."""

    families: list[str]
    names: np.ndarray  # genre names (object array)
    family: np.ndarray  # family index of each genre
    vectors: np.ndarray  # latent taste vector of each genre
    family_weights: np.ndarray  # how common each family is (relative weights)


@dataclass
class _Artists:
    frame: pd.DataFrame
    ids: np.ndarray
    family: np.ndarray
    vectors: np.ndarray
    popularity: np.ndarray  # latent, on a normal scale


@dataclass
class _Tracks:
    frame: pd.DataFrame
    ids: np.ndarray
    vectors: np.ndarray
    quality: np.ndarray
    exposure_logit: np.ndarray
    duration_s: np.ndarray


@dataclass
class _Users:
    frame: pd.DataFrame
    ids: np.ndarray
    vectors: np.ndarray
    skip_bias: np.ndarray
    activity: np.ndarray
    premium: np.ndarray  # premium from the start (buyers are added later)


@dataclass
class _Sessions:
    """Sessions (numbered in time order) and the plays they hold, as positions."""

    ids: np.ndarray
    user: np.ndarray  # user position of each session
    start: np.ndarray  # ns since the epoch
    length: np.ndarray  # plays per session
    play_session: np.ndarray  # session position of each play
    play_user: np.ndarray  # user position of each play


@dataclass
class _Plays:
    """What was played, its true affinity, and whether it was skipped or liked."""

    track: np.ndarray
    affinity: np.ndarray
    skipped: np.ndarray
    liked: np.ndarray
    alpha_skip: float
    alpha_like: float


@dataclass
class _AffinityScale:
    """Constants that standardise ``x_u . y_t / sqrt(d) + quality_t`` to the hidden affinity."""

    dot_scale: float
    mean: float
    std: float


def _genres(rng: np.random.Generator, n_factors: int) -> _Genres:
    """Genre families and genres with their latent vectors (vocabulary order)."""
    families, genres, genre_family, genre_vec = _genre_tables(rng, n_factors)
    family_weights = np.array([FAMILY_WEIGHTS[f] for f in families])
    return _Genres(families, genres, genre_family, genre_vec, family_weights)


def _artists(rng: np.random.Generator, genres: _Genres, n_artists: int, d: int) -> _Artists:
    """Artists: a family, 1-3 of its genres, a taste vector near their genres', a popularity."""
    fam_w = genres.family_weights
    artist_family = rng.choice(len(genres.families), size=n_artists, p=fam_w / fam_w.sum())
    n_genres = rng.choice([1, 2, 3], size=n_artists, p=[0.35, 0.4, 0.25])
    artist_genres = _pick_genres_within(rng, artist_family, genres.family, n_genres, 3)
    g_mask = artist_genres >= 0
    g_sum = np.where(g_mask[..., None], genres.vectors[np.maximum(artist_genres, 0)], 0).sum(axis=1)
    artist_vec = g_sum / n_genres[:, None] + 0.5 * rng.normal(size=(n_artists, d))
    artist_pop = rng.normal(size=n_artists)
    artist_ids = base62_ids(rng, n_artists)
    artists = pd.DataFrame(
        {
            "id": artist_ids,
            "name": _names(rng, n_artists, 2),
            "genres": [list(genres.names[row[row >= 0]]) for row in artist_genres],
        }
    )
    return _Artists(artists, artist_ids, artist_family, artist_vec, artist_pop)


def _audio_features(rng: np.random.Generator, families: list[str], fam: np.ndarray):
    """Audio features of tracks of the given families, drawn around each family's profile.

    Returns the 0-1 features (one column per ``AUDIO_FEATURES``), loudness, tempo, duration in
    seconds and whether the track is explicit.
    """
    n_tracks = len(fam)
    profile = [FAMILY_AUDIO_PROFILE[f] for f in families]
    means, loud_mean, tempo_mean, duration_mean, explicit_p = (
        np.array([p[i] for p in profile])[fam] for i in range(5)
    )
    concentration = 8.0
    audio = rng.beta(means * concentration, (1 - means) * concentration)
    loudness = np.clip(loud_mean + 3.0 * rng.normal(size=n_tracks), -60.0, 0.0)
    tempo = np.clip(tempo_mean + 18.0 * rng.normal(size=n_tracks), 40.0, 220.0)
    duration_s = duration_mean * rng.lognormal(0, 0.25, n_tracks)
    explicit = rng.random(n_tracks) < explicit_p
    return audio, loudness, tempo, duration_s, explicit


def _release_dates(rng: np.random.Generator, n_tracks: int) -> np.ndarray:
    """Release dates skewed to recent years; a quarter of them give the year only."""
    year = np.clip(2024 - np.floor(rng.exponential(12, n_tracks)), 1950, 2024).astype(int)
    month = rng.integers(1, 13, n_tracks)
    day = rng.integers(1, 29, n_tracks)
    full_date = rng.random(n_tracks) < 0.75
    return np.where(
        full_date,
        pd.Series(year).astype(str)
        + "-"
        + pd.Series(month).map("{:02d}".format)
        + "-"
        + pd.Series(day).map("{:02d}".format),
        pd.Series(year).astype(str),
    )


def _tracks(
    rng: np.random.Generator,
    genres: _Genres,
    artists: _Artists,
    behaviour: dict,
    n_tracks: int,
    d: int,
) -> _Tracks:
    """Tracks of popular artists mostly: audio features, taste vector, popularity and quality."""
    artist_w = np.exp(0.8 * artists.popularity)
    track_artist = rng.choice(len(artists.ids), size=n_tracks, p=artist_w / artist_w.sum())
    audio, loudness, tempo, duration_s, explicit = _audio_features(
        rng, genres.families, artists.family[track_artist]
    )
    audio_z = (audio - audio.mean(axis=0)) / audio.std(axis=0)
    projection = rng.normal(size=(len(AUDIO_FEATURES), d)) / np.sqrt(len(AUDIO_FEATURES))
    track_vec = (
        artists.vectors[track_artist]
        + 0.6 * rng.normal(size=(n_tracks, d))
        + 0.6 * audio_z @ projection
    )
    track_pop = artists.popularity[track_artist] + 0.7 * rng.normal(size=n_tracks)
    pop_rank = track_pop.argsort().argsort() / max(n_tracks - 1, 1)
    pop_min = behaviour["popularity_min"]
    popularity = np.round(pop_min + (100 - pop_min) * pop_rank**1.5).astype(int)
    exposure_logit = behaviour["exposure_skew"] * track_pop
    quality = 0.3 * track_pop + 0.3 * rng.normal(size=n_tracks)
    release_date = _release_dates(rng, n_tracks)
    track_ids = base62_ids(rng, n_tracks)
    tracks = pd.DataFrame(
        {
            "id": track_ids,
            "name": _names(rng, n_tracks, 2),
            "popularity": popularity,
            "duration_ms": np.round(duration_s * 1000).astype(int),
            "explicit": explicit.astype(int),
            "id_artist": artists.ids[track_artist],
            "release_date": release_date,
            **{f: np.round(audio[:, i], 4) for i, f in enumerate(AUDIO_FEATURES)},
            "key": rng.integers(0, 12, n_tracks),
            "loudness": np.round(loudness, 3),
            "tempo": np.round(tempo, 3),
        }
    )
    return _Tracks(tracks, track_ids, track_vec, quality, exposure_logit, duration_s)


def _favourite_genres(rng: np.random.Generator, genres: _Genres, taste: dict, n_users: int):
    """Each user's favourite genres (``-1`` padded) and how many they have.

    They come from one family, but about a third of users swap their last one for a genre of a
    second family.
    """
    fam_w = genres.family_weights
    n_fav = rng.integers(taste["favourite_genres"][0], taste["favourite_genres"][1] + 1, n_users)
    user_family = rng.choice(len(genres.families), size=n_users, p=fam_w / fam_w.sum())
    max_fav = taste["favourite_genres"][1]
    fav = _pick_genres_within(rng, user_family, genres.family, n_fav, max_fav)
    second = rng.choice(len(genres.families), size=n_users, p=fam_w / fam_w.sum())
    swap = (rng.random(n_users) < 0.35) & (n_fav > 1)
    other = _pick_genres_within(rng, second, genres.family, np.ones(n_users, int), 1)[:, 0]
    fav[swap, n_fav[swap] - 1] = other[swap]
    return fav, n_fav


def _users(
    rng: np.random.Generator, genres: _Genres, taste: dict, behaviour: dict, n_users: int, d: int
) -> _Users:
    """Users: favourite genres, a taste vector mixing them with a personal part, skip bias,
    activity, premium status and a made-up name and address."""
    fav, n_fav = _favourite_genres(rng, genres, taste, n_users)
    f_mask = fav >= 0
    fav_vec = np.where(f_mask[..., None], genres.vectors[np.maximum(fav, 0)], 0).sum(axis=1)
    fav_vec /= n_fav[:, None]
    w = taste["favourite_genre_weight"]
    user_vec = w * fav_vec + (1 - w) * 1.5 * rng.normal(size=(n_users, d))
    skip_bias = behaviour["skip_propensity_spread"] * rng.normal(size=n_users)
    activity = rng.lognormal(0, behaviour["activity_spread"], n_users)
    premium = rng.random(n_users) < behaviour["premium_share"]
    user_ids = np.arange(101, 101 + n_users)
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "name": rng.choice(FIRST_NAMES, n_users).astype(object)
            + " "
            + rng.choice(LAST_NAMES, n_users).astype(object),
            "city": rng.choice(CITIES, n_users),
            "street": rng.choice(STREETS, n_users).astype(object)
            + " "
            + rng.integers(1, 120, n_users).astype(str).astype(object),
            "favourite_genres": [list(dict.fromkeys(genres.names[row[row >= 0]])) for row in fav],
            "premium_user": premium,
        }
    )
    return _Users(users, user_ids, user_vec, skip_bias, activity, premium)


def _affinity_scale(
    rng: np.random.Generator, users: _Users, tracks: _Tracks, d: int
) -> _AffinityScale:
    """Standardise x.y/sqrt(d) + quality over random pairs."""
    probe_u = rng.integers(0, len(users.ids), 20_000)
    probe_t = rng.integers(0, len(tracks.ids), 20_000)
    raw = (users.vectors[probe_u] * tracks.vectors[probe_t]).sum(1) / np.sqrt(d)
    dot_scale = raw.std() or 1.0
    probe = raw / dot_scale + tracks.quality[probe_t]
    return _AffinityScale(dot_scale, float(probe.mean()), float(probe.std() or 1.0))


def _sessions(
    rng: np.random.Generator, size: dict, behaviour: dict, time: dict, activity: np.ndarray
) -> _Sessions:
    """Sessions of geometric length, enough for the configured number of events, over time."""
    n_users = len(activity)
    skip_rate, like_rate = behaviour["skip_rate"], behaviour["like_rate"]
    non_premium = 1 - behaviour["premium_share"]
    events_per_play = 1 + skip_rate + like_rate + behaviour["ad_rate"] * non_premium
    n_plays_target = max(int(size["n_events"] / events_per_play), n_users)
    mean_len = behaviour["plays_per_session"]
    n_sessions = max(int(n_plays_target / mean_len), 1)
    session_len = np.minimum(
        rng.geometric(1 / mean_len, n_sessions), behaviour["max_plays_per_session"]
    )
    # Every user gets a session (if there are enough); the rest follow activity. Shuffled, as
    # sessions are numbered in time order.
    session_user = rng.permutation(
        np.concatenate(
            [
                rng.permutation(n_users),
                rng.choice(n_users, size=max(n_sessions - n_users, 0), p=activity / activity.sum()),
            ]
        )[:n_sessions]
    )
    start = pd.Timestamp(time["start"], tz="UTC").value  # ns
    span = int(time["days"] * 86_400e9)
    session_start = np.sort(rng.integers(start, start + span, n_sessions))
    session_ids = np.arange(1, n_sessions + 1) + 10_000  # ordered by start time, as logs are
    play_session = np.repeat(np.arange(n_sessions), session_len)
    return _Sessions(
        session_ids,
        session_user,
        session_start,
        session_len,
        play_session,
        session_user[play_session],
    )


def _choose_tracks(
    rng: np.random.Generator,
    taste: dict,
    users: _Users,
    tracks: _Tracks,
    scale: _AffinityScale,
    play_user: np.ndarray,
    d: int,
):
    """The track of each play, chosen among exposure-drawn candidates by affinity (Gumbel-max
    = softmax sampling), and its affinity."""
    n_plays = len(play_user)
    k = int(taste["candidates_per_play"])
    exposure_logit = tracks.exposure_logit
    exposure = _alias_table(np.exp(exposure_logit - exposure_logit.max()))
    user_vec32 = (users.vectors / np.sqrt(d) / scale.dot_scale / scale.std).astype(np.float32)
    track_vec32 = tracks.vectors.astype(np.float32)
    track_shift = ((tracks.quality - scale.mean) / scale.std).astype(np.float32)
    choice = np.float32(taste["choice_signal"])
    play_track = np.empty(n_plays, dtype=np.int64)
    play_aff = np.empty(n_plays, dtype=np.float32)
    chunks = range(0, n_plays, _CHUNK)
    for lo in tqdm(chunks, desc="plays", unit="chunk", disable=len(chunks) < 5, leave=False):
        hi = min(lo + _CHUNK, n_plays)
        cand = _alias_draw(rng, exposure, (hi - lo, k))
        aff = np.einsum("nd,nkd->nk", user_vec32[play_user[lo:hi]], track_vec32[cand])
        aff += track_shift[cand]
        gumbel = -np.log(-np.log(rng.random(aff.shape, dtype=np.float32) + 1e-12))
        pick = np.argmax(choice * aff + gumbel, axis=1)
        rows = np.arange(hi - lo)
        play_track[lo:hi] = cand[rows, pick]
        play_aff[lo:hi] = aff[rows, pick]
    return play_track, play_aff.astype(np.float64)


def _plays(
    rng: np.random.Generator,
    taste: dict,
    behaviour: dict,
    users: _Users,
    tracks: _Tracks,
    scale: _AffinityScale,
    play_user: np.ndarray,
    d: int,
) -> _Plays:
    """Choose each play's track, then skip or like it with calibrated intercepts."""
    n_plays = len(play_user)
    skip_rate, like_rate = behaviour["skip_rate"], behaviour["like_rate"]
    play_track, play_aff = _choose_tracks(rng, taste, users, tracks, scale, play_user, d)
    s = taste["outcome_signal"]
    skip_score = users.skip_bias[play_user] - s * play_aff
    alpha_skip = _calibrate_intercept(skip_score, skip_rate)
    skip_bias = users.skip_bias[play_user]
    skipped = rng.random(n_plays) < skip_probability_of(play_aff, skip_bias, alpha_skip, s)
    like_target = min(like_rate / max(1 - skip_rate, 1e-9), 0.999)
    alpha_like = _calibrate_intercept(s * play_aff[~skipped], like_target)
    liked = ~skipped & (rng.random(n_plays) < like_if_listened(play_aff, alpha_like, s))
    return _Plays(play_track, play_aff, skipped, liked, alpha_skip, alpha_like)


def _premium_purchases(
    rng: np.random.Generator, premium: np.ndarray, share: float, sessions: _Sessions
):
    """Some non-premium users buy premium during the year, at the start of one of their sessions.

    Returns who buys, when (int64 max for nobody) and the session position of each purchase.
    """
    n_users = len(premium)
    session_user = sessions.user
    buyers = (~premium) & (rng.random(n_users) < share)
    buy_time = np.full(n_users, np.iinfo(np.int64).max)
    buyer_sessions = np.flatnonzero(buyers[session_user])
    if len(buyer_sessions):
        chosen = (
            pd.Series(buyer_sessions)
            .groupby(session_user[buyer_sessions])
            .sample(1, random_state=int(rng.integers(2**31)))
            .to_numpy()
        )
        buy_time[session_user[chosen]] = sessions.start[chosen] - 2_000_000_000
    else:
        chosen = np.empty(0, dtype=int)
    return buyers, buy_time, chosen


def _event_times(
    rng: np.random.Generator,
    sessions: _Sessions,
    plays: _Plays,
    duration_s: np.ndarray,
    has_ads: np.ndarray,
    ad_rate: float,
):
    """Timestamps inside sessions: each play takes an optional ad slot, then the time listened
    and a short pause; the ad and the track's own events never overlap a neighbour's.

    Returns the ad, play, skip and like timestamps of each play and whether it has an ad slot.
    """
    n_plays = len(plays.track)
    play_session = sessions.play_session
    listened_s = np.where(plays.skipped, rng.uniform(5, 60, n_plays), duration_s[plays.track])
    listened_ns = (listened_s * 1e9).astype(np.int64)
    ad_slot = has_ads[sessions.play_user] & (rng.random(n_plays) < ad_rate)
    pre_ns = np.where(ad_slot, AD_NS, 0)
    block_ns = pre_ns + listened_ns + rng.integers(0, 3_000_000_000, n_plays)
    block_end = np.cumsum(block_ns)
    first = np.concatenate([[0], np.cumsum(sessions.length)[:-1]])
    block_start = block_end - block_ns - (block_end - block_ns)[first][play_session]
    ad_ts = sessions.start[play_session] + block_start
    play_ts = ad_ts + pre_ns
    skip_ts = play_ts + listened_ns
    like_ts = play_ts + (listened_ns * rng.uniform(0.2, 0.9, n_plays)).astype(np.int64)
    return ad_ts, play_ts, skip_ts, like_ts, ad_slot


def _events_frame(
    blocks: list[tuple],
    session_ids: np.ndarray,
    session_user: np.ndarray,
    user_ids: np.ndarray,
    track_ids: np.ndarray,
) -> pd.DataFrame:
    """The event log from ``(session, timestamp ns, track, type name)`` blocks, in session then
    time order, at the export's millisecond precision."""
    ev_session = np.concatenate([b[0] for b in blocks])
    ev_ts = np.concatenate([b[1] for b in blocks])
    ev_track = np.concatenate([b[2] for b in blocks])
    type_names = [b[3] for b in blocks]
    ev_type = np.concatenate([np.full(len(b[0]), i, dtype=np.int8) for i, b in enumerate(blocks)])
    order = np.lexsort((ev_ts, ev_session))
    ev_ts_ms = ev_ts[order] // 1_000_000 * 1_000_000  # the export has millisecond precision
    return pd.DataFrame(
        {
            "session_id": session_ids[ev_session[order]],
            "timestamp": pd.DatetimeIndex(ev_ts_ms.view("datetime64[ns]")).tz_localize("UTC"),
            "user_id": user_ids[session_user[ev_session[order]]],
            "track_id": pd.Categorical.from_codes(ev_track[order], categories=track_ids),
            "event_type": pd.Categorical.from_codes(ev_type[order], categories=type_names),
        }
    )


def _events(
    rng_play: np.random.Generator,
    rng_session: np.random.Generator,
    behaviour: dict,
    users: _Users,
    tracks: _Tracks,
    sessions: _Sessions,
    plays: _Plays,
) -> pd.DataFrame:
    """Plays, skips, likes, ads and premium purchases as one event log.

    Sets ``premium_user`` of the users frame for those who buy premium.
    """
    premium = users.premium
    buyers, buy_time, chosen = _premium_purchases(
        rng_session, premium, behaviour["buy_premium_share"], sessions
    )
    users.frame["premium_user"] = premium | buyers
    ad_ts, play_ts, skip_ts, like_ts, ad_slot = _event_times(
        rng_play, sessions, plays, tracks.duration_s, ~premium | buyers, behaviour["ad_rate"]
    )
    ad = ad_slot & (ad_ts < buy_time[sessions.play_user])  # no ads once premium is bought
    play_session, play_track = sessions.play_session, plays.track
    skipped, liked = plays.skipped, plays.liked
    blocks = [
        (play_session, play_ts, play_track, "play"),
        (play_session[skipped], skip_ts[skipped], play_track[skipped], "skip"),
        (play_session[liked], like_ts[liked], play_track[liked], "like"),
        (play_session[ad], ad_ts[ad], np.full(ad.sum(), -1), "advertisement"),
        (chosen, buy_time[sessions.user[chosen]], np.full(len(chosen), -1), "buy_premium"),
    ]
    return _events_frame(blocks, sessions.ids, sessions.user, users.ids, tracks.ids)


def _truth(
    users: _Users, tracks: _Tracks, plays: _Plays, scale: _AffinityScale, params: dict, d: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The hidden truth: users' and tracks' latent factors and the constants of the formula."""
    taste = params["taste"]
    factor_cols = [f"f{i}" for i in range(d)]
    user_truth = pd.DataFrame(users.vectors, columns=factor_cols)
    user_truth.insert(0, "user_id", users.ids)
    user_truth.insert(1, "skip_bias", users.skip_bias)
    user_truth.insert(2, "activity", users.activity)
    track_truth = pd.DataFrame(tracks.vectors, columns=factor_cols)
    track_truth.insert(0, "track_id", tracks.ids)
    track_truth.insert(1, "quality", tracks.quality)
    track_truth.insert(2, "exposure_logit", tracks.exposure_logit)
    truth_params = {
        "n_factors": d,
        "dot_scale": float(scale.dot_scale),
        "affinity_mean": scale.mean,
        "affinity_std": scale.std,
        "choice_signal": float(taste["choice_signal"]),
        "outcome_signal": float(taste["outcome_signal"]),
        "alpha_skip": float(plays.alpha_skip),
        "alpha_like": float(plays.alpha_like),
        "candidates_per_play": int(taste["candidates_per_play"]),
        "seed": params["seed"],
        "formula": TRUTH_FORMULA,
    }
    return user_truth, track_truth, truth_params


def generate_catalogue(params: dict) -> SyntheticCatalogue:
    """Generate users, artists, tracks and session events (clean) with their hidden truth.

    Each stage draws from its own generator (genres, artists, tracks, users, sessions, plays),
    all spawned from ``params["seed"]``.
    """
    size = params["sizes"][params["size"]] if isinstance(params["size"], str) else params["size"]
    taste, behaviour = params["taste"], params["behaviour"]
    d = int(taste["n_factors"])
    seeds = np.random.SeedSequence(params["seed"]).spawn(6)
    rng_genre, rng_artist, rng_track, rng_user, rng_session, rng_play = map(
        np.random.default_rng, seeds
    )
    genres = _genres(rng_genre, d)
    artists = _artists(rng_artist, genres, size["n_artists"], d)
    tracks = _tracks(rng_track, genres, artists, behaviour, size["n_tracks"], d)
    users = _users(rng_user, genres, taste, behaviour, size["n_users"], d)
    scale = _affinity_scale(rng_play, users, tracks, d)
    sessions = _sessions(rng_session, size, behaviour, params["time"], users.activity)
    plays = _plays(rng_play, taste, behaviour, users, tracks, scale, sessions.play_user, d)
    events = _events(rng_play, rng_session, behaviour, users, tracks, sessions, plays)
    logger.info(
        "Generated %d users, %d artists, %d tracks, %d sessions, %d events",
        size["n_users"],
        size["n_artists"],
        size["n_tracks"],
        len(sessions.ids),
        len(events),
    )
    user_truth, track_truth, truth_params = _truth(users, tracks, plays, scale, params, d)
    return SyntheticCatalogue(
        users.frame, artists.frame, tracks.frame, events, user_truth, track_truth, truth_params
    )
