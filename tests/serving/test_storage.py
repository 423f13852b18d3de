"""The service's SQLite storage on its own: the prediction log's retention and the registry of
users registered through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pozytywka.serving.incoming import IncomingWriter
from pozytywka.serving.prediction_log import PredictionLog, Record
from pozytywka.serving.registry import AlreadyRegistered, UserRegistry


def _record(at: datetime, user_id: int) -> Record:
    return Record(at.isoformat(), "/playlists", None, None, False, None, user_id, 200, 1.0, "", "")


def test_retention_keeps_the_newest_rows_and_drops_the_old_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(PredictionLog, "PRUNE_EVERY", 10)
    log = PredictionLog(tmp_path / "log.sqlite", retention={"max_rows": 25})
    now = datetime.now(UTC)
    for i in range(40):
        log.append(_record(now, i))
    # pruned at the 10th, 20th, 30th and 40th append: the newest 25 are kept
    assert log.frame()["user_id"].tolist() == list(range(15, 40))
    log.close()
    aged = PredictionLog(tmp_path / "aged.sqlite")
    for i, days in enumerate([500, 401, 399, 10, 0]):
        aged.append(_record(now - timedelta(days=days), i))
    aged.close()
    reopened = PredictionLog(tmp_path / "aged.sqlite", retention={"max_age_days": 400})
    assert reopened.frame()["user_id"].tolist() == [2, 3, 4]  # pruned on open
    assert reopened.prune() == 0
    everything_old = PredictionLog(tmp_path / "aged.sqlite", retention={"max_age_days": 1})
    assert everything_old.frame()["user_id"].tolist() == [4]


def test_failed_answers_never_push_answered_ones_out_and_bytes_are_bounded(tmp_path):
    now = datetime.now(UTC)

    def record(i: int, status: int, size: int) -> Record:
        return Record(
            now.isoformat(), "/p", None, None, False, None, i, status, 1.0, "x" * size, ""
        )

    log = PredictionLog(tmp_path / "log.sqlite", retention={"max_failed_rows": 3})
    for i in range(4):
        log.append(record(i, 200, 10))
    for i in range(4, 14):
        log.append(record(i, 422, 10))
    log.prune()
    kept = log.frame()
    assert kept["user_id"].tolist() == [0, 1, 2, 3, 11, 12, 13]  # the newest 3 failures
    log.close()
    sized = PredictionLog(tmp_path / "sized.sqlite")
    for i, size in enumerate([100, 100, 100, 50, 50]):  # 400 bytes in all
        sized.append(record(i, 200, size))
    sized.close()
    bounded = PredictionLog(tmp_path / "sized.sqlite", retention={"max_bytes": 210})
    assert bounded.frame()["user_id"].tolist() == [2, 3, 4]  # 200 bytes: the oldest went
    assert bounded.prune() == 0 and bounded.size() == 200
    bounded.append(record(5, 200, 20))
    assert bounded.size() == 220  # kept with every append and delete, never by a scan
    assert bounded.prune() == 1 and bounded.size() == 120


def test_the_registry_registers_once_and_rolls_back_a_failed_append(tmp_path):
    registry = UserRegistry(tmp_path / "service.sqlite")
    writer = IncomingWriter(tmp_path / "users")
    record = {"user_id": 7, "favourite_genres": ["jazz"], "premium_user": False}
    first = registry.register(record, lambda at: writer.append([record], at))
    assert registry.register(dict(record), lambda at: writer.append([record], at)) == first
    with pytest.raises(AlreadyRegistered):
        registry.register({**record, "premium_user": True}, lambda at: None)
    assert [r["user_id"] for r in writer.read_all()] == [7]

    def broken(at):
        raise OSError("disk full")

    with pytest.raises(OSError):
        registry.register({**record, "user_id": 8}, broken)
    assert registry.get(8) is None and registry.get(7) == record
    # Another process (another connection) sees what this one registered.
    other = UserRegistry(tmp_path / "service.sqlite")
    assert other.known([6, 7, 8]) == {7} and other.count() == 1


def test_a_restart_adopts_users_only_the_raw_files_hold(tmp_path):
    """A crash between the file append and the commit leaves a user only in the file; a line
    with U+2028 in a name is one record (the loader splits at newlines only)."""
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "2026-12-01.jsonl").write_text(
        '{"user_id": 5, "name": "Ola\u2028Nowak", "favourite_genres": ["rock"]}\n'
        '{"user_id": "x"}\nnot json\n{"user_id": 6, "name": "Jan\u0085", "favourite_genres": []}\n',
        encoding="utf-8",
    )
    registry = UserRegistry(tmp_path / "service.sqlite")
    assert registry.adopt(IncomingWriter(tmp_path / "users").read_all()) == 2
    assert registry.get(5)["name"] == "Ola\u2028Nowak" and registry.known([5, 6]) == {5, 6}
    assert registry.adopt(IncomingWriter(tmp_path / "users").read_all()) == 0
