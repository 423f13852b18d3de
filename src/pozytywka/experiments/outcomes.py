"""Served answers from the prediction log, joined with the listening events that followed.

An event is the outcome of the *latest* answer that served the same user the same track before
it, within the attribution window (a duration, or ``session``: the rest of the session the user
was in next). Served lists (playlists, recommendations) and skip predictions are joined
separately, so a play answers both the playlist that offered the track and the skip prediction
made for it. Answers no event followed are kept (flagged), never dropped.
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

# Route (without a forced /base or /advanced) -> experiment; recommendations are not A/B tested.
EXPERIMENT_OF = {
    "/playlists": "playlists",
    "/recommendations": "recommendations",
    "/skip-predictions": "skip_predictions",
}
LIST_EXPERIMENTS = ("playlists", "recommendations")
ARMS = ("base", "advanced")
NO_ARM = "none"
OUTCOME_EVENTS = ("play", "skip", "like")
OUTCOME_FLAGS = ("played", "skipped", "liked")
PROBABILITY_CLIP = 1e-6  # log loss of a 0 or 1 probability that turned out wrong stays finite
TIME = "datetime64[ns, UTC]"  # one resolution for answers and events (merge_asof needs it)


def parse_window(window: str) -> pd.Timedelta | None:
    """``"30min"``, ``"2h"``...: a duration; ``"session"``: None (the rest of the session)."""
    if str(window).strip().lower() == "session":
        return None
    try:
        duration = pd.Timedelta(str(window))
    except ValueError as exc:
        raise ValueError(
            f"attribution window {window!r} is neither 'session' nor a duration like '30min'"
        ) from exc
    if duration <= pd.Timedelta(0):
        raise ValueError(f"attribution window {window!r} must be positive")
    return duration


def utc(moment) -> pd.Timestamp:
    """An ISO-8601 time (UTC when it names no offset) or timestamp, in UTC."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def in_period(times: pd.Series, since=None, until=None) -> pd.Series:
    """Which ``times`` (UTC) fall in [since, until); an open end is None."""
    keep = pd.Series(True, index=times.index)
    if since is not None:
        keep &= times >= utc(since)
    if until is not None:
        keep &= times < utc(until)
    return keep


def answers(log: pd.DataFrame, since=None, until=None) -> pd.DataFrame:
    """One row per prediction-log record of an answering route in [since, until): its time,
    experiment, arm (``none`` where no A/B test ran), whether the route forced the arm, user
    and HTTP status."""
    base = log["endpoint"].str.replace(r"/(base|advanced)$", "", regex=True)
    rows = log[base.isin(list(EXPERIMENT_OF))].copy()
    rows["experiment"] = base[rows.index].map(EXPERIMENT_OF)
    rows["variant"] = rows["variant"].where(rows["variant"].isin(ARMS), NO_ARM)
    rows["answered_at"] = pd.to_datetime(rows["logged_at"], utc=True, format="ISO8601").astype(TIME)
    rows = rows[in_period(rows["answered_at"], since, until)]
    return pd.DataFrame(
        {
            "answer_id": rows["id"].astype("int64"),
            "answered_at": rows["answered_at"],
            "endpoint": rows["endpoint"].astype(str),
            "experiment": rows["experiment"].astype(str),
            "variant": rows["variant"].astype(str),
            "forced": rows["forced"].astype(bool),
            "user_id": rows["user_id"].astype("Int64"),
            "status": rows["status"].astype("int64"),
            "response": rows["response"],
        }
    ).reset_index(drop=True)


def served_tracks(answered: pd.DataFrame) -> pd.DataFrame:
    """Each track a successful playlist or recommendation answer served, with its position."""
    ok = answered[answered["experiment"].isin(LIST_EXPERIMENTS) & (answered["status"] == 200)]
    tracks = [[t["track_id"] for t in orjson.loads(r)["tracks"]] for r in ok["response"]]
    lengths = np.fromiter((len(t) for t in tracks), dtype=np.int64, count=len(tracks))
    frame = ok.loc[ok.index.repeat(lengths), _ANSWER_COLUMNS].reset_index(drop=True)
    frame["position"] = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else []
    frame["track_id"] = pd.Series([t for ts in tracks for t in ts], dtype=object)
    return frame


def skip_answers(answered: pd.DataFrame) -> pd.DataFrame:
    """Each successful skip prediction: the track, the prediction and its skip probability."""
    ok = answered[(answered["experiment"] == "skip_predictions") & (answered["status"] == 200)]
    bodies = [orjson.loads(r) for r in ok["response"]]
    frame = ok[_ANSWER_COLUMNS].reset_index(drop=True)
    frame["track_id"] = pd.Series([b["track_id"] for b in bodies], dtype=object)
    frame["predicted_skip"] = np.array([b["prediction"] == "SKIP" for b in bodies], dtype=bool)
    frame["skip_probability"] = np.array([b["skip_probability"] for b in bodies], dtype=np.float64)
    return frame


_ANSWER_COLUMNS = ["answer_id", "answered_at", "experiment", "variant", "forced", "user_id"]


def track_events(events: pd.DataFrame) -> pd.DataFrame:
    """The play, skip and like events of a cleaned events table, by time."""
    ev = events[events["event_type"].astype(str).isin(OUTCOME_EVENTS)]
    return (
        pd.DataFrame(
            {
                "user_id": ev["user_id"].astype("int64"),
                "track_id": ev["track_id"].astype(object),
                "timestamp": pd.to_datetime(ev["timestamp"], utc=True).astype(TIME),
                "event_type": ev["event_type"].astype(str),
                "session_id": ev["session_id"].astype("int64"),
            }
        )
        .sort_values("timestamp", kind="stable")
        .reset_index(drop=True)
    )


def attribute(
    served: pd.DataFrame, events: pd.DataFrame, window: str, max_session: str = "12h"
) -> pd.DataFrame:
    """``served`` (answer_id, user_id, track_id, answered_at) with ``played``, ``skipped`` and
    ``liked``: whether such an event of the user on the track followed the answer, within the
    window, before any later answer served that track again."""
    duration = parse_window(window)
    out = served.copy()
    for flag in OUTCOME_FLAGS:
        out[flag] = False
    if not len(out) or not len(events):
        return out
    keys = (
        out[["answer_id", "user_id", "track_id", "answered_at"]]
        .dropna(subset=["user_id"])
        .astype({"user_id": "int64"})
        .sort_values("answered_at", kind="stable")
    )
    matched = pd.merge_asof(
        events,
        keys,
        left_on="timestamp",
        right_on="answered_at",
        by=["user_id", "track_id"],
        direction="backward",
        tolerance=duration if duration is not None else pd.Timedelta(max_session),
    ).dropna(subset=["answer_id"])
    if duration is None:
        matched = matched[
            matched["session_id"].to_numpy()
            == matched["answer_id"].map(_next_session(keys, events, max_session)).to_numpy()
        ]
    hits = (
        pd.crosstab(
            [matched["answer_id"].astype("int64"), matched["track_id"]], matched["event_type"]
        )
        .reindex(columns=list(OUTCOME_EVENTS), fill_value=0)
        .gt(0)
        .set_axis(list(OUTCOME_FLAGS), axis=1)
    )
    joined = out[["answer_id", "track_id"]].join(hits, on=["answer_id", "track_id"])
    for flag in OUTCOME_FLAGS:
        out[flag] = joined[flag].fillna(False).astype(bool).to_numpy()
    return out


def _next_session(keys: pd.DataFrame, events: pd.DataFrame, max_session: str) -> pd.Series:
    """answer_id -> the session of the user's first track event at or after the answer."""
    firsts = keys.drop_duplicates("answer_id")[["answer_id", "user_id", "answered_at"]]
    nxt = pd.merge_asof(
        firsts,
        events[["user_id", "timestamp", "session_id"]],
        left_on="answered_at",
        right_on="timestamp",
        by="user_id",
        direction="forward",
        tolerance=pd.Timedelta(max_session),
    )
    return nxt.set_index("answer_id")["session_id"]


def join(
    answered: pd.DataFrame, events: pd.DataFrame, attribution: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(served tracks, skip predictions) of ``answered`` with the outcomes that followed:
    ``attribution`` holds ``window`` and ``max_session``. Answers the route forced to an arm
    and answers assigned by hash are attributed apart, so a forced call (a test, or the
    simulator asking the other arm) never takes the outcome of the answer the user got."""
    ev = track_events(events)
    window, cap = attribution["window"], attribution.get("max_session", "12h")
    served, skips = [], []
    for _, part in answered.groupby("forced"):
        served.append(attribute(served_tracks(part), ev, window, cap))
        skips.append(skip_outcomes(attribute(skip_answers(part), ev, window, cap)))
    if not served:
        empty = answered.iloc[0:0]
        return attribute(served_tracks(empty), ev, window), skip_outcomes(
            attribute(skip_answers(empty), ev, window)
        )
    return pd.concat(served, ignore_index=True), pd.concat(skips, ignore_index=True)


def events_from_records(records: list[dict]) -> pd.DataFrame:
    """Raw session records (as ``POST /events`` wrote them) as an events table; records
    without a parsable time or ids are left out (the pipeline counts them as defects)."""
    frame = pd.DataFrame.from_records(
        records, columns=["session_id", "timestamp", "user_id", "track_id", "event_type"]
    )
    frame["timestamp"] = pd.to_datetime(
        frame["timestamp"], utc=True, format="ISO8601", errors="coerce"
    )
    for column in ("session_id", "user_id"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=["timestamp", "session_id", "user_id"])
    return frame[frame["event_type"].isin(OUTCOME_EVENTS) & frame["track_id"].notna()]


# ---- per-user outcomes ---------------------------------------------------------------------

LIST_METRICS = ("like_rate", "skip_rate", "play_rate", "hit_rate", "plays_per_user")
SKIP_METRICS = ("accuracy", "log_loss", "brier_score")
# Larger is better, except where listed here (the markdown and plots read this).
LOWER_IS_BETTER = {"skip_rate", "log_loss", "brier_score", "expected_calibration_error"}


def list_outcomes_per_user(served: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, arm, user): answers, tracks served, played, skipped, liked, answers with
    a like (hits) and without any later event, and the rates of LIST_METRICS. Every served
    track is in the denominator (intention to treat): a playlist nobody played counts as
    not played, not as missing."""
    if not len(served):
        return pd.DataFrame(
            columns=["experiment", "variant", "user_id", "answers", "served", *LIST_METRICS]
        )
    per_answer = (
        served.assign(any_event=served[list(OUTCOME_FLAGS)].any(axis=1))
        .groupby(["experiment", "variant", "user_id", "answer_id"])
        .agg(
            served=("track_id", "size"),
            played=("played", "sum"),
            skipped=("skipped", "sum"),
            liked=("liked", "sum"),
            any_event=("any_event", "any"),
        )
    )
    per_answer["hit"] = per_answer["liked"] > 0
    users = per_answer.groupby(level=["experiment", "variant", "user_id"]).agg(
        answers=("served", "size"),
        served=("served", "sum"),
        played=("played", "sum"),
        skipped=("skipped", "sum"),
        liked=("liked", "sum"),
        hits=("hit", "sum"),
        answers_with_event=("any_event", "sum"),
    )
    users["answers_without_event"] = users["answers"] - users["answers_with_event"]
    users["like_rate"] = users["liked"] / users["served"]
    users["skip_rate"] = users["skipped"] / users["served"]
    users["play_rate"] = users["played"] / users["served"]
    users["hit_rate"] = users["hits"] / users["answers"]
    users["plays_per_user"] = users["played"].astype(np.float64)
    return users.reset_index()


def skip_outcomes(skips: pd.DataFrame) -> pd.DataFrame:
    """Skip predictions with the label that followed (``skipped``: a skip event; a play without
    one: listened) where one did (``labelled``), and each answer's correctness, log loss and
    Brier score."""
    out = skips.copy()
    out["labelled"] = out["played"] | out["skipped"]
    y = out["skipped"].to_numpy(dtype=np.float64)
    q = out["skip_probability"].to_numpy(dtype=np.float64)
    q = np.clip(q, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    out["correct"] = (out["predicted_skip"] == out["skipped"]).astype(np.float64)
    out["log_loss"] = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    out["brier_score"] = (out["skip_probability"] - y) ** 2
    return out


def skip_outcomes_per_user(skips: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, user), over labelled answers: accuracy, log loss and Brier score, with the
    count of answers no play or skip followed."""
    cols = ["experiment", "variant", "user_id"]
    if not len(skips):
        return pd.DataFrame(columns=[*cols, "answers", "labelled", *SKIP_METRICS])
    labelled = skips[skips["labelled"]]
    users = skips.groupby(cols).agg(answers=("answer_id", "size"), labelled=("labelled", "sum"))
    means = labelled.groupby(cols).agg(
        accuracy=("correct", "mean"),
        log_loss=("log_loss", "mean"),
        brier_score=("brier_score", "mean"),
    )
    return users.join(means).reset_index()
