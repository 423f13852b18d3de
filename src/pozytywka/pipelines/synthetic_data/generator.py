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
from tqdm.auto import tqdm

from .vocabulary import (
    AUDIO_FEATURES,
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


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate_intercept(scores: np.ndarray, target: float, sample: int = 200_000) -> float:
    """Intercept ``c`` with ``mean(sigmoid(c + scores)) == target`` (bisection; mean is monotone).

    Solved on an evenly spaced subsample: the mean of 200k scores is exact to about 1e-3.
    """
    if len(scores) > sample:
        scores = scores[:: len(scores) // sample]
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(mid + scores).mean() < target:
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


def generate_catalogue(params: dict) -> SyntheticCatalogue:
    """Generate users, artists, tracks and session events (clean) with their hidden truth."""
    size = params["sizes"][params["size"]] if isinstance(params["size"], str) else params["size"]
    taste, behaviour = params["taste"], params["behaviour"]
    n_users, n_artists, n_tracks = size["n_users"], size["n_artists"], size["n_tracks"]
    d = int(taste["n_factors"])
    seeds = np.random.SeedSequence(params["seed"]).spawn(6)
    rng_genre, rng_artist, rng_track, rng_user, rng_session, rng_play = map(
        np.random.default_rng, seeds
    )

    families, genres, genre_family, genre_vec = _genre_tables(rng_genre, d)
    fam_w = np.array([FAMILY_WEIGHTS[f] for f in families])

    # Artists ---------------------------------------------------------------------------
    artist_family = rng_artist.choice(len(families), size=n_artists, p=fam_w / fam_w.sum())
    n_genres = rng_artist.choice([1, 2, 3], size=n_artists, p=[0.35, 0.4, 0.25])
    artist_genres = _pick_genres_within(rng_artist, artist_family, genre_family, n_genres, 3)
    g_mask = artist_genres >= 0
    g_sum = np.where(g_mask[..., None], genre_vec[np.maximum(artist_genres, 0)], 0).sum(axis=1)
    artist_vec = g_sum / n_genres[:, None] + 0.5 * rng_artist.normal(size=(n_artists, d))
    artist_pop = rng_artist.normal(size=n_artists)
    artist_ids = base62_ids(rng_artist, n_artists)
    artists = pd.DataFrame({
        "id": artist_ids,
        "name": _names(rng_artist, n_artists, 2),
        "genres": [list(genres[row[row >= 0]]) for row in artist_genres],
    })

    # Tracks ----------------------------------------------------------------------------
    artist_w = np.exp(0.8 * artist_pop)
    track_artist = rng_track.choice(n_artists, size=n_tracks, p=artist_w / artist_w.sum())
    fam = artist_family[track_artist]
    profile = [FAMILY_AUDIO_PROFILE[f] for f in families]
    means, loud_mean, tempo_mean, duration_mean, explicit_p = (
        np.array([p[i] for p in profile])[fam] for i in range(5))
    concentration = 8.0
    audio = rng_track.beta(means * concentration, (1 - means) * concentration)
    loudness = np.clip(loud_mean + 3.0 * rng_track.normal(size=n_tracks), -60.0, 0.0)
    tempo = np.clip(tempo_mean + 18.0 * rng_track.normal(size=n_tracks), 40.0, 220.0)
    duration_s = duration_mean * rng_track.lognormal(0, 0.25, n_tracks)
    explicit = rng_track.random(n_tracks) < explicit_p
    audio_z = (audio - audio.mean(axis=0)) / audio.std(axis=0)
    projection = rng_track.normal(size=(len(AUDIO_FEATURES), d)) / np.sqrt(len(AUDIO_FEATURES))
    track_vec = artist_vec[track_artist] + 0.6 * rng_track.normal(size=(n_tracks, d)) \
        + 0.6 * audio_z @ projection
    track_pop = artist_pop[track_artist] + 0.7 * rng_track.normal(size=n_tracks)
    pop_rank = track_pop.argsort().argsort() / max(n_tracks - 1, 1)
    pop_min = behaviour["popularity_min"]
    popularity = np.round(pop_min + (100 - pop_min) * pop_rank ** 1.5).astype(int)
    exposure_logit = behaviour["exposure_skew"] * track_pop
    quality = 0.3 * track_pop + 0.3 * rng_track.normal(size=n_tracks)
    year = np.clip(2024 - np.floor(rng_track.exponential(12, n_tracks)), 1950, 2024).astype(int)
    month = rng_track.integers(1, 13, n_tracks)
    day = rng_track.integers(1, 29, n_tracks)
    full_date = rng_track.random(n_tracks) < 0.75
    release_date = np.where(
        full_date,
        pd.Series(year).astype(str) + "-" + pd.Series(month).map("{:02d}".format) + "-"
        + pd.Series(day).map("{:02d}".format),
        pd.Series(year).astype(str),
    )
    track_ids = base62_ids(rng_track, n_tracks)
    tracks = pd.DataFrame({
        "id": track_ids,
        "name": _names(rng_track, n_tracks, 2),
        "popularity": popularity,
        "duration_ms": np.round(duration_s * 1000).astype(int),
        "explicit": explicit.astype(int),
        "id_artist": artist_ids[track_artist],
        "release_date": release_date,
        **{f: np.round(audio[:, i], 4) for i, f in enumerate(AUDIO_FEATURES)},
        "key": rng_track.integers(0, 12, n_tracks),
        "loudness": np.round(loudness, 3),
        "tempo": np.round(tempo, 3),
    })

    # Users -----------------------------------------------------------------------------
    n_fav = rng_user.integers(taste["favourite_genres"][0], taste["favourite_genres"][1] + 1,
                              n_users)
    user_family = rng_user.choice(len(families), size=n_users, p=fam_w / fam_w.sum())
    max_fav = taste["favourite_genres"][1]
    fav = _pick_genres_within(rng_user, user_family, genre_family, n_fav, max_fav)
    # A second family for about a third of users: replace their last favourite.
    second = rng_user.choice(len(families), size=n_users, p=fam_w / fam_w.sum())
    swap = (rng_user.random(n_users) < 0.35) & (n_fav > 1)
    other = _pick_genres_within(rng_user, second, genre_family, np.ones(n_users, int), 1)[:, 0]
    fav[swap, n_fav[swap] - 1] = other[swap]
    f_mask = fav >= 0
    fav_vec = np.where(f_mask[..., None], genre_vec[np.maximum(fav, 0)], 0).sum(axis=1)
    fav_vec /= n_fav[:, None]
    w = taste["favourite_genre_weight"]
    user_vec = w * fav_vec + (1 - w) * 1.5 * rng_user.normal(size=(n_users, d))
    skip_bias = behaviour["skip_propensity_spread"] * rng_user.normal(size=n_users)
    activity = rng_user.lognormal(0, behaviour["activity_spread"], n_users)
    premium = rng_user.random(n_users) < behaviour["premium_share"]
    user_ids = np.arange(101, 101 + n_users)
    users = pd.DataFrame({
        "user_id": user_ids,
        "name": rng_user.choice(FIRST_NAMES, n_users).astype(object) + " "
        + rng_user.choice(LAST_NAMES, n_users).astype(object),
        "city": rng_user.choice(CITIES, n_users),
        "street": rng_user.choice(STREETS, n_users).astype(object) + " "
        + rng_user.integers(1, 120, n_users).astype(str).astype(object),
        "favourite_genres": [list(dict.fromkeys(genres[row[row >= 0]])) for row in fav],
        "premium_user": premium,
    })

    # Affinity scale: standardise x.y/sqrt(d) + quality over random pairs.
    probe_u = rng_play.integers(0, n_users, 20_000)
    probe_t = rng_play.integers(0, n_tracks, 20_000)
    raw = (user_vec[probe_u] * track_vec[probe_t]).sum(1) / np.sqrt(d)
    dot_scale = raw.std() or 1.0
    probe = raw / dot_scale + quality[probe_t]
    aff_mean, aff_std = float(probe.mean()), float(probe.std() or 1.0)

    # Sessions --------------------------------------------------------------------------
    skip_rate, like_rate = behaviour["skip_rate"], behaviour["like_rate"]
    ad_rate, n_events = behaviour["ad_rate"], size["n_events"]
    non_premium = 1 - behaviour["premium_share"]
    events_per_play = 1 + skip_rate + like_rate + ad_rate * non_premium
    n_plays_target = max(int(n_events / events_per_play), n_users)
    mean_len = behaviour["plays_per_session"]
    max_len = behaviour["max_plays_per_session"]
    n_sessions = max(int(n_plays_target / mean_len), 1)
    session_len = np.minimum(rng_session.geometric(1 / mean_len, n_sessions), max_len)
    # Every user gets a session (if there are enough); the rest follow activity. Shuffled, as
    # sessions are numbered in time order.
    session_user = rng_session.permutation(np.concatenate([
        rng_session.permutation(n_users),
        rng_session.choice(n_users, size=max(n_sessions - n_users, 0), p=activity / activity.sum()),
    ])[:n_sessions])
    start = pd.Timestamp(params["time"]["start"], tz="UTC").value  # ns
    span = int(params["time"]["days"] * 86_400e9)
    session_start = np.sort(rng_session.integers(start, start + span, n_sessions))
    session_ids = np.arange(1, n_sessions + 1) + 10_000  # ordered by start time, as logs are
    n_plays = int(session_len.sum())
    play_session = np.repeat(np.arange(n_sessions), session_len)
    play_user = session_user[play_session]

    # Plays: choose among exposure-drawn candidates by affinity (Gumbel-max = softmax sampling).
    k = int(taste["candidates_per_play"])
    exposure = _alias_table(np.exp(exposure_logit - exposure_logit.max()))
    user_vec32 = (user_vec / np.sqrt(d) / dot_scale / aff_std).astype(np.float32)
    track_vec32 = track_vec.astype(np.float32)
    track_shift = ((quality - aff_mean) / aff_std).astype(np.float32)
    choice = np.float32(taste["choice_signal"])
    play_track = np.empty(n_plays, dtype=np.int64)
    play_aff = np.empty(n_plays, dtype=np.float32)
    chunks = range(0, n_plays, _CHUNK)
    for lo in tqdm(chunks, desc="plays", unit="chunk", disable=len(chunks) < 5, leave=False):
        hi = min(lo + _CHUNK, n_plays)
        cand = _alias_draw(rng_play, exposure, (hi - lo, k))
        aff = np.einsum("nd,nkd->nk", user_vec32[play_user[lo:hi]], track_vec32[cand])
        aff += track_shift[cand]
        gumbel = -np.log(-np.log(rng_play.random(aff.shape, dtype=np.float32) + 1e-12))
        pick = np.argmax(choice * aff + gumbel, axis=1)
        rows = np.arange(hi - lo)
        play_track[lo:hi] = cand[rows, pick]
        play_aff[lo:hi] = aff[rows, pick]
    play_aff = play_aff.astype(np.float64)

    s = taste["outcome_signal"]
    skip_score = skip_bias[play_user] - s * play_aff
    alpha_skip = _calibrate_intercept(skip_score, skip_rate)
    skipped = rng_play.random(n_plays) < _sigmoid(alpha_skip + skip_score)
    like_target = min(like_rate / max(1 - skip_rate, 1e-9), 0.999)
    alpha_like = _calibrate_intercept(s * play_aff[~skipped], like_target)
    liked = ~skipped & (rng_play.random(n_plays) < _sigmoid(alpha_like + s * play_aff))

    # Some non-premium users buy premium during the year, at the start of one of their sessions.
    buyers = (~premium) & (rng_session.random(n_users) < behaviour["buy_premium_share"])
    buy_time = np.full(n_users, np.iinfo(np.int64).max)
    buyer_sessions = np.flatnonzero(buyers[session_user])
    if len(buyer_sessions):
        chosen = pd.Series(buyer_sessions).groupby(session_user[buyer_sessions]).sample(
            1, random_state=int(rng_session.integers(2**31))).to_numpy()
        buy_time[session_user[chosen]] = session_start[chosen] - 2_000_000_000
    else:
        chosen = np.empty(0, dtype=int)
    users["premium_user"] = premium | buyers

    # Timestamps inside sessions: each play takes an optional ad slot, then the time listened
    # and a short pause; the ad and the track's own events never overlap a neighbour's.
    listened_s = np.where(skipped, rng_play.uniform(5, 60, n_plays), duration_s[play_track])
    listened_ns = (listened_s * 1e9).astype(np.int64)
    ad_slot = (~premium[play_user] | buyers[play_user]) & (rng_play.random(n_plays) < ad_rate)
    pre_ns = np.where(ad_slot, AD_NS, 0)
    block_ns = pre_ns + listened_ns + rng_play.integers(0, 3_000_000_000, n_plays)
    block_end = np.cumsum(block_ns)
    first = np.concatenate([[0], np.cumsum(session_len)[:-1]])
    block_start = block_end - block_ns - (block_end - block_ns)[first][play_session]
    ad_ts = session_start[play_session] + block_start
    play_ts = ad_ts + pre_ns
    skip_ts = play_ts + listened_ns
    like_ts = play_ts + (listened_ns * rng_play.uniform(0.2, 0.9, n_plays)).astype(np.int64)
    ad = ad_slot & (ad_ts < buy_time[play_user])  # no ads once premium is bought

    blocks = [
        (play_session, play_ts, play_track, "play"),
        (play_session[skipped], skip_ts[skipped], play_track[skipped], "skip"),
        (play_session[liked], like_ts[liked], play_track[liked], "like"),
        (play_session[ad], ad_ts[ad], np.full(ad.sum(), -1), "advertisement"),
        (chosen, buy_time[session_user[chosen]], np.full(len(chosen), -1), "buy_premium"),
    ]
    ev_session = np.concatenate([b[0] for b in blocks])
    ev_ts = np.concatenate([b[1] for b in blocks])
    ev_track = np.concatenate([b[2] for b in blocks])
    type_names = [b[3] for b in blocks]
    ev_type = np.concatenate([np.full(len(b[0]), i, dtype=np.int8) for i, b in enumerate(blocks)])
    order = np.lexsort((ev_ts, ev_session))
    ev_ts_ms = ev_ts[order] // 1_000_000 * 1_000_000  # the export has millisecond precision
    events = pd.DataFrame({
        "session_id": session_ids[ev_session[order]],
        "timestamp": pd.DatetimeIndex(ev_ts_ms.view("datetime64[ns]")).tz_localize("UTC"),
        "user_id": user_ids[session_user[ev_session[order]]],
        "track_id": pd.Categorical.from_codes(ev_track[order], categories=track_ids),
        "event_type": pd.Categorical.from_codes(ev_type[order], categories=type_names),
    })
    logger.info("Generated %d users, %d artists, %d tracks, %d sessions, %d events",
                n_users, n_artists, n_tracks, n_sessions, len(events))

    factor_cols = [f"f{i}" for i in range(d)]
    user_truth = pd.DataFrame(user_vec, columns=factor_cols)
    user_truth.insert(0, "user_id", user_ids)
    user_truth.insert(1, "skip_bias", skip_bias)
    user_truth.insert(2, "activity", activity)
    track_truth = pd.DataFrame(track_vec, columns=factor_cols)
    track_truth.insert(0, "track_id", track_ids)
    track_truth.insert(1, "quality", quality)
    track_truth.insert(2, "exposure_logit", exposure_logit)
    truth_params = {
        "n_factors": d,
        "dot_scale": float(dot_scale),
        "affinity_mean": aff_mean,
        "affinity_std": aff_std,
        "choice_signal": float(taste["choice_signal"]),
        "outcome_signal": float(s),
        "alpha_skip": float(alpha_skip),
        "alpha_like": float(alpha_like),
        "candidates_per_play": k,
        "seed": params["seed"],
        "formula": "a = ((x_u.y_t)/sqrt(n_factors)/dot_scale + quality_t - affinity_mean)"
                   " / affinity_std; p_skip = sigmoid(alpha_skip + skip_bias_u - outcome_signal*a);"
                   " p_like = (1 - p_skip) * sigmoid(alpha_like + outcome_signal*a);"
                   " p_choose ~ exp(exposure_logit_t) * exp(choice_signal*a)",
    }
    return SyntheticCatalogue(users, artists, tracks, events, user_truth, track_truth, truth_params)
