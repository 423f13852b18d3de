"""Simulated listeners: an A/B experiment rehearsed against the running service over HTTP.

Each simulated user (a user of the synthetic catalogue, whose hidden taste the generator
recorded) asks, day after day, for group playlists or recommendations as the app would, asks a
skip prediction for the first tracks it is about to play, then listens: every served track is
played, skipped with the generator's own probability for that user and track, and liked if not
skipped with the generator's like probability; the events go to ``POST /events``.

Because the simulator knows each served track's true probabilities, it also records what each
answer was worth in expectation, and what the *other* arm would have served the same request
(asked through the forced ``/base`` or ``/advanced`` route, not listened to): the true average
effect on the simulated users, which the analysis puts beside its estimate.

The simulator's own draws are repeatable from ``seed``; the service's baseline playlist draws
its own random tracks, so answers of that arm differ between runs unless the service's
``playlists.baseline_seed`` is set.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..synthetic import truth as hidden
from .outcomes import ARMS, PROBABILITY_CLIP

OTHER_ARM = {"base": "advanced", "advanced": "base"}


@dataclass(frozen=True)
class SimulationPlan:
    users: int = 200
    days: int = 2
    requests_per_day: int = 2
    playlist_share: float = 0.6  # the other requests ask for personal recommendations
    group_sizes: tuple[int, ...] = (2, 3, 4, 5)  # the asking user included
    playlist_length: int = 20
    k: int = 20
    skip_checks: int = 3  # skip predictions asked per answer, for its first tracks
    concurrency: int = 8
    seed: int = 0
    counterfactual: bool = True  # ask the other arm too (forced route) for the true effect

    def __post_init__(self):
        if self.users < 1 or self.days < 1 or self.requests_per_day < 1:
            raise ValueError("users, days and requests_per_day must be at least 1")
        if not 0 <= self.playlist_share <= 1:
            raise ValueError("playlist_share must be within [0, 1]")
        if not self.group_sizes or min(self.group_sizes) < 1:
            raise ValueError("group_sizes must be sizes of at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")


class Listeners:
    """The generator's hidden truth, asked per user and served tracks."""

    def __init__(self, truth: dict):
        users, tracks, self.params = truth["users"], truth["tracks"], truth["params"]
        factors = [f"f{i}" for i in range(self.params["n_factors"])]
        self._user_row = pd.Index(users["user_id"])
        self._track_row = pd.Index(tracks["track_id"])
        self._user_factors = users[factors].to_numpy(dtype=np.float64)
        self._skip_bias = users["skip_bias"].to_numpy(dtype=np.float64)
        self._track_factors = tracks[factors].to_numpy(dtype=np.float64)
        self._quality = tracks["quality"].to_numpy(dtype=np.float64)

    def knows(self, user_ids) -> np.ndarray:
        return self._user_row.get_indexer(pd.Index(user_ids)) >= 0

    def probabilities(self, user_id: int, track_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """True P(skip | play) and P(like) of each track for the user (NaN: a track the truth
        does not know)."""
        rows = self._track_row.get_indexer(pd.Index(track_ids))
        known = rows >= 0
        p_skip = np.full(len(track_ids), np.nan)
        p_like = np.full(len(track_ids), np.nan)
        if known.any():
            u = self._user_row.get_loc(user_id)
            p_skip[known], p_like[known] = hidden.outcome_probabilities(
                self._user_factors[u],
                self._skip_bias[u],
                self._track_factors[rows[known]],
                self._quality[rows[known]],
                self.params,
            )
        return p_skip, p_like


@dataclass
class Tally:
    """What the service answered: per route ok, refused (4xx) and failed (5xx, no answer)."""

    ok: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    events_acknowledged: int = 0
    events_refused: int = 0
    events_unsent: int = 0  # the POST failed: the service may or may not have kept them
    unknown_tracks: int = 0  # served tracks the truth does not know: not listened to

    def as_dict(self) -> dict:
        routes = sorted(set(self.ok) | set(self.refused) | set(self.failed))
        return {
            "requests": {
                r: {"ok": self.ok[r], "refused": self.refused[r], "failed": self.failed[r]}
                for r in routes
            },
            "events_acknowledged": self.events_acknowledged,
            "events_refused": self.events_refused,
            "events_unsent": self.events_unsent,
            "unknown_tracks": self.unknown_tracks,
        }


@dataclass
class SimulationResult:
    plan: SimulationPlan
    started_at: str
    finished_at: str
    tally: Tally
    truth: pd.DataFrame  # one row per assigned answer: expected outcomes under both arms

    def summary(self) -> dict:
        return {
            "plan": asdict(self.plan),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **self.tally.as_dict(),
            "truth_rows": {
                str(k): int(v) for k, v in self.truth.groupby("experiment").size().items()
            }
            if len(self.truth)
            else {},
        }


def list_expectation(p_skip: np.ndarray, p_like: np.ndarray) -> dict[str, float]:
    """Expected outcomes of one served list: tracks, plays, skips, likes, and the chance of
    at least one like."""
    known = np.isfinite(p_like)
    return {
        "served": float(len(p_like)),
        "played": float(known.sum()),
        "skipped": float(np.nansum(p_skip)),
        "liked": float(np.nansum(p_like)),
        "hit": float(1 - np.prod(1 - p_like[known])),
    }


def skip_expectation(p_skip: float, skip_probability: float, predicted_skip: bool) -> dict:
    """Expected correctness, log loss and Brier score of one skip prediction, given the true
    skip probability."""
    q = min(max(skip_probability, PROBABILITY_CLIP), 1 - PROBABILITY_CLIP)
    return {
        "accuracy": p_skip if predicted_skip else 1 - p_skip,
        "log_loss": -(p_skip * math.log(q) + (1 - p_skip) * math.log(1 - q)),
        "brier_score": p_skip * (1 - skip_probability) ** 2 + (1 - p_skip) * skip_probability**2,
    }


class _Run:
    def __init__(self, client, listeners, pool, plan, api_key, max_batch):
        self.client, self.listeners, self.pool, self.plan = client, listeners, pool, plan
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.max_batch = max_batch
        self.tally = Tally()
        self.truth: list[dict] = []

    async def post(self, route: str, body: dict, headers: dict | None = None) -> dict | None:
        """The answer's body, or None when the service refused (4xx) or failed (5xx, no
        answer); each outcome counted."""
        return (await self.send(route, body, headers))[1]

    async def send(self, route: str, body: dict, headers: dict | None = None):
        try:
            response = await self.client.post(route, json=body, headers=headers)
        except httpx.HTTPError:
            self.tally.failed[route] += 1
            return "failed", None
        if response.status_code >= 500:
            self.tally.failed[route] += 1
            return "failed", None
        if response.status_code >= 400:
            self.tally.refused[route] += 1
            return "refused", None
        self.tally.ok[route] += 1
        return "ok", response.json()

    async def user(self, user_id: int, seed: np.random.SeedSequence, bar) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(self.plan.days):
            session_id = int(rng.integers(1, 2**53))  # the API takes ids up to 2^53 - 1
            for _ in range(self.plan.requests_per_day):
                await self.request(user_id, session_id, rng)
            bar.update(1)

    async def request(self, user_id: int, session_id: int, rng: np.random.Generator) -> None:
        plan = self.plan
        if rng.random() < plan.playlist_share:
            size = int(rng.choice(plan.group_sizes))
            others = rng.choice(self.pool[self.pool != user_id], size - 1, replace=False)
            body = {
                "user_id": user_id,
                "other_users": [int(u) for u in others],
                "playlist_length": plan.playlist_length,
            }
            answer = await self.post("/playlists", body)
            if answer is None:
                return
            tracks = [t["track_id"] for t in answer["tracks"]]
            await self.record_playlist(user_id, body, answer["variant"], tracks)
        else:
            answer = await self.post("/recommendations", {"user_id": user_id, "k": plan.k})
            if answer is None:
                return
            tracks = [t["track_id"] for t in answer["tracks"]]
        for track_id in tracks[: plan.skip_checks]:
            await self.skip_check(user_id, track_id)
        await self.listen(user_id, session_id, tracks, rng)

    async def record_playlist(self, user_id, body, variant, tracks) -> None:
        if not self.plan.counterfactual:
            return
        other = await self.post(f"/playlists/{OTHER_ARM[variant]}", body)
        if other is None:
            return
        lists = {variant: tracks, OTHER_ARM[variant]: [t["track_id"] for t in other["tracks"]]}
        row: dict = {"experiment": "playlists", "user_id": user_id, "variant": variant}
        for arm in ARMS:
            expected = list_expectation(*self.listeners.probabilities(user_id, lists[arm]))
            row.update({f"{k}_{arm}": v for k, v in expected.items()})
        self.truth.append(row | {"answered_at": datetime.now(UTC)})

    async def skip_check(self, user_id: int, track_id: str) -> None:
        body = {"user_id": user_id, "track_id": track_id}
        answer = await self.post("/skip-predictions", body)
        if answer is None or not self.plan.counterfactual:
            return
        variant = answer["variant"]
        other = await self.post(f"/skip-predictions/{OTHER_ARM[variant]}", body)
        if other is None:
            return
        p_skip = float(self.listeners.probabilities(user_id, [track_id])[0][0])
        if not math.isfinite(p_skip):
            return
        row: dict = {"experiment": "skip_predictions", "user_id": user_id, "variant": variant}
        for arm, given in ((variant, answer), (OTHER_ARM[variant], other)):
            expected = skip_expectation(
                p_skip, given["skip_probability"], given["prediction"] == "SKIP"
            )
            row.update({f"{k}_{arm}": v for k, v in expected.items()})
        self.truth.append(row | {"answered_at": datetime.now(UTC)})

    async def listen(self, user_id, session_id, tracks, rng) -> None:
        """Play every served track; skip or like it as the generator would; post the events
        (timed from now in 0.1 ms steps, in the order they happen), and wait until the last
        has happened, so that the user's next answer comes after it."""
        p_skip, p_like = self.listeners.probabilities(user_id, tracks)
        known = np.isfinite(p_skip)
        self.tally.unknown_tracks += int((~known).sum())
        like_if_listened = np.where(known, p_like / np.maximum(1 - p_skip, 1e-12), 0.0)
        skipped = rng.random(len(tracks)) < np.nan_to_num(p_skip)
        liked = ~skipped & (rng.random(len(tracks)) < like_if_listened)
        start, step = datetime.now(UTC), timedelta(microseconds=100)
        events: list[dict] = []
        for track_id, ok, skip, like in zip(tracks, known, skipped, liked, strict=True):
            if not ok:
                continue
            kinds = ["play"] + (["skip"] if skip else []) + (["like"] if like else [])
            for kind in kinds:
                stamp = start + step * len(events)
                events.append(
                    {
                        "session_id": session_id,
                        "timestamp": stamp.isoformat().replace("+00:00", "Z"),
                        "user_id": user_id,
                        "track_id": track_id,
                        "event_type": kind,
                    }
                )
        for i in range(0, len(events), self.max_batch):
            batch = events[i : i + self.max_batch]
            outcome, answer = await self.send("/events", {"events": batch}, self.headers)
            if answer is not None:
                self.tally.events_acknowledged += int(answer["accepted"])
            elif outcome == "failed":
                self.tally.events_unsent += len(batch)
            else:
                self.tally.events_refused += len(batch)
        ahead = (start + step * len(events) - datetime.now(UTC)).total_seconds()
        if ahead > 0:
            await asyncio.sleep(ahead)


async def simulate(
    client: httpx.AsyncClient,
    listeners: Listeners,
    user_ids,
    plan: SimulationPlan,
    api_key: str | None,
    *,
    max_batch: int = 1000,
    progress: bool = True,
) -> SimulationResult:
    """Run ``plan`` against the service ``client`` talks to, with simulated users drawn from
    ``user_ids`` (those the truth knows)."""
    pool = np.asarray(user_ids, dtype=np.int64)
    pool = pool[listeners.knows(pool)]
    if len(pool) < max(plan.group_sizes):
        raise ValueError(
            f"{len(pool)} users both the service and the synthetic truth know: too few for "
            f"groups of {max(plan.group_sizes)}"
        )
    rng = np.random.default_rng(plan.seed)
    chosen = rng.choice(pool, size=min(plan.users, len(pool)), replace=False)
    seeds = np.random.SeedSequence(plan.seed).spawn(len(chosen))
    run = _Run(client, listeners, pool, plan, api_key, max_batch)
    queue = list(zip(chosen.tolist(), seeds, strict=True))[::-1]
    started = datetime.now(UTC)
    with tqdm(
        total=len(chosen) * plan.days, desc="simulated user-days", disable=not progress
    ) as bar:

        async def worker():
            while queue:
                user_id, seed = queue.pop()
                await run.user(int(user_id), seed, bar)

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))
    return SimulationResult(
        plan=plan,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        tally=run.tally,
        truth=pd.DataFrame(run.truth),
    )
