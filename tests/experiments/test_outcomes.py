"""Answers joined with the events that followed: hand-built logs and event tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pozytywka.experiments import outcomes
from pozytywka.experiments.simulator import Listeners
from pozytywka.synthetic import truth as hidden

T0 = pd.Timestamp("2026-12-01T12:00:00Z")


def _log(rows: list[dict]) -> pd.DataFrame:
    out = []
    for i, r in enumerate(rows, start=1):
        tracks = r.get("tracks", [])
        response = r.get("response") or {"tracks": [{"track_id": t} for t in tracks]}
        out.append(
            {
                "id": i,
                "logged_at": (T0 + pd.Timedelta(r.get("minute", 0), "min")).isoformat(),
                "endpoint": r.get("endpoint", "/playlists"),
                "experiment": r.get("experiment", "playlists"),
                "variant": r.get("variant", "base"),
                "forced": int(r.get("forced", False)),
                "model_version": "v",
                "user_id": r.get("user", 1),
                "status": r.get("status", 200),
                "latency_ms": 1.0,
                "request": "{}",
                "response": json.dumps(response),
            }
        )
    return pd.DataFrame(out)


def _events(rows: list[tuple]) -> pd.DataFrame:
    """(user, track, minute, type[, session])"""
    return outcomes.track_events(
        pd.DataFrame(
            {
                "session_id": [r[4] if len(r) > 4 else 1 for r in rows],
                "timestamp": [T0 + pd.Timedelta(r[2], "min") for r in rows],
                "user_id": [r[0] for r in rows],
                "track_id": [r[1] for r in rows],
                "event_type": pd.Categorical([r[3] for r in rows]),
            }
        )
    )


def test_an_event_counts_for_the_latest_answer_that_served_the_track_within_the_window():
    log = _log(
        [
            {"tracks": ["A", "B", "C"], "minute": 0},
            {"tracks": ["A"], "minute": 10},
            {"tracks": ["A"], "minute": 0, "user": 2},
        ]
    )
    events = _events(
        [
            (1, "A", -1, "like"),  # before any answer: nobody's outcome
            (1, "A", 1, "play"),
            (1, "B", 2, "play"),
            (1, "B", 3, "skip"),
            (1, "A", 11, "like"),  # after the second answer served A again: its outcome
            (1, "C", 31, "play"),  # 31 minutes on: outside the 30-minute window
            (3, "A", 1, "like"),  # another user
        ]
    )
    served = outcomes.attribute(outcomes.served_tracks(outcomes.answers(log)), events, "30min")
    flags = served.set_index(["answer_id", "track_id"])[["played", "skipped", "liked"]]
    assert flags.loc[(1, "A")].tolist() == [True, False, False]
    assert flags.loc[(1, "B")].tolist() == [True, True, False]
    assert flags.loc[(1, "C")].tolist() == [False, False, False]
    assert flags.loc[(2, "A")].tolist() == [False, False, True]
    assert flags.loc[(3, "A")].tolist() == [False, False, False]
    wide = outcomes.attribute(outcomes.served_tracks(outcomes.answers(log)), events, "1h")
    assert wide.set_index(["answer_id", "track_id"]).loc[(1, "C"), "played"]


def test_session_window_takes_the_rest_of_the_next_session():
    log = _log([{"tracks": ["A", "B"], "minute": 0}])
    events = _events(
        [
            (1, "X", -5, "play", 7),  # the session before the answer
            (1, "A", 50, "play", 8),  # the next session, long after: counts
            (1, "B", 300, "play", 9),  # a later session: does not
        ]
    )
    served = outcomes.attribute(outcomes.served_tracks(outcomes.answers(log)), events, "session")
    assert served["played"].tolist() == [True, False]


def test_answers_keep_arm_forced_errors_and_period():
    log = _log(
        [
            {"minute": 0, "tracks": ["A"]},
            {
                "minute": 1,
                "tracks": ["A"],
                "endpoint": "/playlists/advanced",
                "variant": "advanced",
                "forced": 1,
            },
            {
                "minute": 2,
                "tracks": ["A"],
                "endpoint": "/recommendations",
                "experiment": None,
                "variant": None,
            },
            {"minute": 3, "status": 422, "response": {"detail": "bad"}},
            {"minute": 4, "endpoint": "/similar-tracks", "experiment": None, "variant": None},
        ]
    )
    answered = outcomes.answers(log)
    assert answered["experiment"].tolist() == ["playlists"] * 2 + ["recommendations", "playlists"]
    assert answered["variant"].tolist() == ["base", "advanced", "none", "base"]
    assert answered["forced"].tolist() == [False, True, False, False]
    assert outcomes.served_tracks(answered)["answer_id"].nunique() == 3  # the 422 serves nothing
    later = outcomes.answers(log, since=T0 + pd.Timedelta(90, "s"))
    assert later["answer_id"].tolist() == [3, 4]


def test_per_user_rates_count_every_served_track_and_answers_nothing_followed():
    log = _log(
        [
            {"tracks": ["A", "B", "C", "D"], "minute": 0},
            {"tracks": ["E", "F"], "minute": 1},  # nothing follows
            {"tracks": ["A", "B"], "minute": 0, "user": 2, "variant": "advanced"},
        ]
    )
    events = _events(
        [
            (1, "A", 2, "play"),
            (1, "A", 2.5, "like"),
            (1, "B", 3, "play"),
            (1, "B", 3.5, "skip"),
            (2, "A", 1, "play"),
        ]
    )
    served = outcomes.attribute(outcomes.served_tracks(outcomes.answers(log)), events, "30min")
    users = outcomes.list_outcomes_per_user(served).set_index("user_id")
    one = users.loc[1]
    assert (one["answers"], one["served"], one["played"], one["liked"]) == (2, 6, 2, 1)
    assert one["like_rate"] == pytest.approx(1 / 6) and one["skip_rate"] == pytest.approx(1 / 6)
    assert one["hit_rate"] == 0.5 and one["answers_without_event"] == 1
    assert users.loc[2, "play_rate"] == 0.5 and users.loc[2, "variant"] == "advanced"


def test_skip_outcomes_label_correctness_and_log_loss():
    log = _log(
        [
            {
                "endpoint": "/skip-predictions",
                "experiment": "skip_predictions",
                "response": {"track_id": t, "prediction": p, "skip_probability": q},
                "minute": m,
            }
            for t, p, q, m in [("A", "SKIP", 0.8, 0), ("B", "PLAY", 0.3, 0), ("C", "PLAY", 0.1, 0)]
        ]
    )
    events = _events([(1, "A", 1, "play"), (1, "A", 1.1, "skip"), (1, "B", 1, "play")])
    skips = outcomes.skip_outcomes(
        outcomes.attribute(outcomes.skip_answers(outcomes.answers(log)), events, "30min")
    )
    assert skips["labelled"].tolist() == [True, True, False]
    assert skips["correct"].tolist()[:2] == [1.0, 1.0]
    assert skips["log_loss"].tolist()[:2] == pytest.approx([-np.log(0.8), -np.log(0.7)])
    per_user = outcomes.skip_outcomes_per_user(skips).iloc[0]
    assert (per_user["answers"], per_user["labelled"]) == (3, 2)
    assert per_user["brier_score"] == pytest.approx((0.2**2 + 0.3**2) / 2)


def test_incoming_records_become_events_and_bad_ones_are_left_out():
    records = [
        {
            "session_id": 1,
            "timestamp": "2026-12-01T12:00:00Z",
            "user_id": 1,
            "track_id": "A",
            "event_type": "play",
        },
        {
            "session_id": 1,
            "timestamp": "not a time",
            "user_id": 1,
            "track_id": "A",
            "event_type": "like",
        },
        {
            "session_id": 1,
            "timestamp": "2026-12-01T12:01:00+01:00",
            "user_id": 1,
            "track_id": None,
            "event_type": "advertisement",
        },
    ]
    events = outcomes.events_from_records(records)
    assert len(events) == 1 and events["timestamp"].iloc[0] == T0


@pytest.mark.parametrize("window", ["soon", "-5min", "0s"])
def test_a_window_that_is_no_duration_is_refused(window):
    with pytest.raises(ValueError, match="window"):
        outcomes.parse_window(window)


def test_forced_answers_do_not_take_the_outcome_of_the_assigned_one():
    log = _log(
        [
            {"tracks": ["A"], "minute": 0},
            {
                "tracks": ["A"],
                "minute": 1,
                "endpoint": "/playlists/advanced",
                "variant": "advanced",
                "forced": 1,
            },
        ]
    )
    events = _events([(1, "A", 2, "play"), (1, "A", 2.1, "like")])
    served, _ = outcomes.join(outcomes.answers(log), events, {"window": "30min"})
    assert served.set_index("answer_id")["liked"].to_dict() == {1: True, 2: True}


def test_the_simulators_probabilities_are_the_generators(tiny_catalogue):
    user_truth, track_truth, params = tiny_catalogue[0][4:7]
    truth = {"users": user_truth, "tracks": track_truth, "params": params}
    user = int(truth["users"]["user_id"].iloc[3])
    tracks = list(truth["tracks"]["track_id"].iloc[[5, 1, 9]]) + ["unknown"]
    p_skip, p_like = Listeners(truth).probabilities(user, tracks)
    users = [user] * 3
    args = (truth["users"], truth["tracks"], truth["params"], users, tracks[:3])
    assert p_skip[:3] == pytest.approx(hidden.skip_probability(*args))
    assert p_like[:3] == pytest.approx(hidden.like_probability(*args))
    assert np.isnan(p_skip[3]) and np.isnan(p_like[3])
