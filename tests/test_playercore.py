"""The simulated players' shared core (``loadtests.playercore``), in process: when a
refused call is sent again and after how long, what a join ack says, and the record of
answers and snapshots a client keeps."""

from __future__ import annotations

import pytest

from loadtests.playercore import (
    RETRY_STATUSES,
    AnswerBook,
    BoardView,
    Retry,
    join_reply,
    retry_after_s,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("status", [200, 201, 400, 401, 403, 404, 409, 422])
def test_a_final_status_is_not_retried(status: int) -> None:
    retry = Retry()
    assert not retry.again(status)
    assert not retry.gave_up and retry.retried == 0


def test_429_5xx_and_a_dropped_connection_are_retried_with_a_doubling_backoff() -> None:
    assert {429, 500, 502, 503, 504} == RETRY_STATUSES
    retry = Retry(first=0.05, most=0.3, clock=Clock())
    waits = []
    for status in (None, 429, 500, 502, 503, 504):
        assert retry.again(status)
        waits.append(retry.wait)
    assert waits == [0.05, 0.1, 0.2, 0.3, 0.3, 0.3]
    assert retry.retried == 6


def test_the_server_hint_wins_when_longer_and_may_be_capped() -> None:
    retry = Retry(first=0.05, clock=Clock())
    assert retry.again(429, 2.5) and retry.wait == 2.5
    assert retry.again(429, 0.01) and retry.wait == 0.1, "the backoff when the hint is shorter"
    capped = Retry(first=0.2, most_hint=1.0, clock=Clock())
    assert capped.again(503, 30.0) and capped.wait == 1.0


def test_jitter_keeps_the_wait_between_half_and_all_of_the_backoff() -> None:
    for _ in range(50):
        retry = Retry(first=0.4, jitter=True, clock=Clock())
        assert retry.again(503)
        assert 0.2 <= retry.wait <= 0.4


def test_it_gives_up_at_the_deadline_or_after_the_tries() -> None:
    clock = Clock()
    retry = Retry(first=1.0, most=1.0, give_up_after=2.5, clock=clock)
    assert retry.again(503)
    clock.now += 1.0
    assert retry.again(503)
    clock.now += 1.0
    assert not retry.again(503), "a wait past the deadline"
    assert retry.gave_up
    tries = Retry(tries=3, clock=Clock())
    assert tries.again(429) and tries.again(429)
    assert not tries.again(429) and tries.gave_up


@pytest.mark.parametrize(
    ("value", "seconds"), [("2", 2.0), ("0.5", 0.5), ("", None), (None, None), ("soon", None)]
)
def test_retry_after_header(value: str | None, seconds: float | None) -> None:
    assert retry_after_s(value) == seconds


def test_a_join_ack_read() -> None:
    ok = join_reply({"ok": True, "state": {}, "leaderboard": {"version": 7, "entries": []}})
    assert ok.ok and ok.version == 7 and ok.board == {"version": 7, "entries": []}
    assert join_reply({"ok": True, "leaderboard": None}).version == 0
    limited = join_reply({"ok": False, "error": "too many events", "retry_after_ms": 250})
    assert not limited.ok and limited.error == "too many events" and limited.retry_after == 0.25
    refused = join_reply({"ok": False, "error": "unknown session"})
    assert not refused.ok and refused.retry_after is None
    assert not join_reply(None).ok and not join_reply(["ok"]).ok
    assert not join_reply({"leaderboard": {"version": 3}}).ok, "an ack says ok"


def test_the_answer_book_keeps_the_first_accepted_reply_and_flags_disagreeing_repeats() -> None:
    book = AnswerBook()
    first = {"points": 100, "score": 100}
    assert book.record("q1", [(200, first), (200, dict(first))]) == first
    assert book.reply_mismatches == []
    assert book.record("q1", [(200, {"points": 100, "score": 200})]) == {
        "points": 100,
        "score": 200,
    }
    assert book.accepted["q1"] == first, "the first 200 stays what the client saw accepted"
    assert book.record("q2", [(200, {"points": 0, "score": 100}), (409, None)]) is not None
    assert book.reply_mismatches and book.reply_mismatches[0].startswith("q2:")
    assert book.record("q3", [(409, None), None]) is None and book.refused == {"q3": 409}
    assert book.record("q4", [None, None]) is None and book.undecided == {"q4"}
    assert set(book.accepted_at) == {"q1", "q2"}
    assert book.points == 100


def _board(sid: str, version: int, **scores: int) -> dict:
    entries = [{"user_id": u, "score": s} for u, s in scores.items()]
    return {"session_id": sid, "version": version, "players": len(entries), "entries": entries}


def test_the_board_view_keeps_the_newest_version_and_refuses_another_session() -> None:
    view = BoardView("s1")
    assert view.receive(_board("s1", 3, a=10), "ack") is not None
    assert view.receive(_board("s1", 5, a=20, b=5)) is not None
    late = view.receive(_board("s1", 4, a=15))
    assert late is not None and late.version == 4
    assert view.best is not None and view.best.version == 5
    assert view.best.scores == {"a": 20, "b": 5} and view.best.players == 2
    assert [s.source for s in view.snapshots] == ["ack", "event", "event"]
    assert view.receive(_board("s2", 9, a=1)) is None, "another session's board is a leak"
    assert len(view.snapshots) == 3
