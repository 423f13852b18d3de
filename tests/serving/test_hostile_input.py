"""The contract at the door: every text and time field of every request refuses lone
surrogates, oversized strings and timestamps whose offset takes them out of range with a 4xx,
and nothing is stored (issue 37)."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.project import API_KEY

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": API_KEY, "content-type": "application/json"}
SURROGATES = st.builds(
    lambda head, s, tail: head + s + tail,
    st.text(max_size=5),
    st.sampled_from(["\ud800", "\udfff", "\udc00\ud800"]),
    st.text(max_size=5),
)
HUGE = st.integers(100_000, 120_000).map(lambda n: "x" * n)
TEXT = st.one_of(SURROGATES, HUGE)
OUT_OF_RANGE = st.sampled_from(
    [
        "1970-01-01T00:00:00+14:00",  # 1969 in UTC
        "1970-01-01T05:00:00+06:00",
        "2100-12-31T23:00:00-14:00",  # 2101 in UTC
        "2100-06-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
    ]
)


def _templates(ids) -> list[tuple[str, dict, list]]:
    """(route, a valid body, the path of one text or time field in it)."""
    user, track = ids["users"][0], ids["track"]
    event = {"session_id": 1, "timestamp": "2026-11-22T18:00:00Z", "user_id": user}
    play = {**event, "track_id": track, "event_type": "play"}
    new_user = {"user_id": 10**12, "name": "A", "city": "B", "street": "C",
                "favourite_genres": [ids["genre"]]}  # fmt: skip
    group = {"user_id": user, "other_users": [ids["users"][1]],
             "filters": {"exclude_genres": [ids["genre"]]}}  # fmt: skip
    with_filters = {"user_id": user, "k": 5, "filters": {"include_genres": [ids["genre"]]}}
    return [
        ("/recommendations", with_filters, ["filters", "include_genres", 0]),
        ("/playlists", group, ["filters", "exclude_genres", 0]),
        ("/skip-predictions", {"user_id": user, "track_id": track}, ["track_id"]),
        ("/similar-tracks", {"track_id": track, "k": 3}, ["track_id"]),
        ("/rerank", {"user_id": user, "track_ids": [track]}, ["track_ids", 0]),
        ("/events", {"events": [play]}, ["events", 0, "track_id"]),
        ("/users", new_user, ["name"]),
        ("/users", new_user, ["city"]),
        ("/users", new_user, ["street"]),
        ("/users", new_user, ["favourite_genres", 0]),
    ]


def _with(body: dict, path: list, value) -> dict:
    out = copy.deepcopy(body)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


def _stored(state) -> tuple[int, int, int]:
    return (
        len(state.events.read_all()),
        len(state.users_writer.read_all()),
        state.catalogue.registry.count(),
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_hostile_text_and_times_get_a_4xx_and_nothing_is_stored(client, state, ids, data):
    before = _stored(state)
    templates = _templates(ids)
    route, body, path = data.draw(st.sampled_from(templates))
    sent = _with(body, path, data.draw(TEXT))
    answer = client.post(route, content=json.dumps(sent), headers=KEY)  # \ud800 as an escape
    assert 400 <= answer.status_code < 500, (route, path, answer.status_code)
    assert len(answer.content) < 4000  # the input is not echoed back whole
    timed = _with(templates[5][1], ["events", 0, "timestamp"], data.draw(OUT_OF_RANGE))
    answer = client.post("/events", content=json.dumps(timed), headers=KEY)
    assert answer.status_code == 422, timed
    assert _stored(state) == before


def test_every_valid_template_is_accepted(client, ids):
    """The templates above are valid as they stand: each refusal is the hostile value's."""
    for i, (route, template, _) in enumerate(_templates(ids)):
        body = template
        if route == "/users":  # each registers a user of its own
            body = {**template, "user_id": template["user_id"] + i}
        answer = client.post(route, content=json.dumps(body), headers=KEY)
        assert answer.status_code in (200, 201, 202), (route, answer.text)
