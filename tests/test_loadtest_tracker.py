"""Unit tests of the answer -> leaderboard bookkeeping (no servers)."""

from __future__ import annotations

import pytest

from loadtests.client import _frame, _xor
from loadtests.stats import percentile, summary
from loadtests.tracker import LeaderboardTracker, at_others, at_others_summary


def board(version: int, scores: dict[str, int]) -> dict:
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    return {
        "version": version,
        "entries": [
            {"rank": i + 1, "user_id": u, "nickname": u, "score": s}
            for i, (u, s) in enumerate(ranked[:10])
        ],
    }


def test_version_match_after_the_reply() -> None:
    t = LeaderboardTracker("me")
    t.on_answer(10.0, {"score": 900, "points": 900, "rank": 1, "version": 5})
    t.on_leaderboard(board(4, {"me": 0}), 10.01, 0)  # older snapshot: not it
    assert t.pending and not t.latencies_ms
    t.on_leaderboard(board(7, {"me": 900}), 10.05, 0)  # coalesced past 5: it is
    assert not t.pending
    assert round(t.latencies_ms[0]) == 50
    assert t.outcome()["delivered"] == 1 and t.outcome()["missing"] == 0


def test_event_before_reply_counts_from_send() -> None:
    t = LeaderboardTracker("me")
    t.on_leaderboard(board(3, {"me": 0}), 9.0, 0)  # before the answer was sent
    t.on_leaderboard(board(6, {"me": 500}), 10.02, 0)
    t.on_answer(10.0, {"score": 500, "points": 500, "rank": 1, "version": 6})
    assert [round(x) for x in t.latencies_ms] == [20]


def test_version_method_measures_players_outside_the_top_10() -> None:
    t = LeaderboardTracker("me")
    t.on_answer(1.0, {"score": 10, "points": 10, "rank": 40, "version": 9})
    others = {f"p{i}": 1000 + i for i in range(10)}
    t.on_leaderboard(board(9, others), 1.03, 0)
    assert t.outcome()["delivered"] == 1


def test_score_fallback_only_top_10_and_raised_scores() -> None:
    t = LeaderboardTracker("me")
    t.on_answer(1.0, {"score": 0, "points": 0, "rank": 3})  # wrong: nothing to see
    t.on_answer(2.0, {"score": 800, "points": 800, "rank": 12})  # outside the top 10
    assert t.skipped == 2 and not t.pending
    t.on_answer(3.0, {"score": 1700, "points": 900, "rank": 2})
    t.on_leaderboard(board(20, {"me": 800, "x": 2000}), 3.01, 0)  # old score: not yet
    assert t.pending
    t.on_leaderboard(board(21, {"me": 1700, "x": 2000}), 3.04, 0)
    assert not t.pending and round(t.latencies_ms[0]) == 40


def test_unmatched_answers_are_missing_or_displaced() -> None:
    t = LeaderboardTracker("me")
    t.on_answer(1.0, {"score": 100, "points": 100, "rank": 10})
    t.on_answer(2.0, {"score": 300, "points": 200, "rank": 9, "version": 50})
    full = {f"p{i}": 500 for i in range(10)}
    t.on_leaderboard(board(40, full), 2.5, 0)  # a full board above 100, version too old
    out = t.outcome()
    assert out["displaced"] == 1  # the score-matched answer was pushed out
    assert out["missing"] == 1  # the version-matched one never arrived
    assert out["expected"] == 1 and out["delivered"] == 0


def test_versions_after() -> None:
    t = LeaderboardTracker("me")
    for v in (3, 5, 5, 8):
        t.on_leaderboard(board(v, {}), float(v), 0)
    assert t.versions_after(4) == {5, 8}


def test_client_frames_are_masked_and_reversible() -> None:
    payload = b'42["join",{"session_id":"abc"}]'
    f = _frame(payload)
    assert f[0] == 0x81 and f[1] & 0x80 and f[1] & 0x7F == len(payload)
    mask = f[2:6]
    assert _xor(f[6:], mask) == payload
    big = _frame(b"x" * 70000)
    assert big[1] & 0x7F == 127 and int.from_bytes(big[2:10], "big") == 70000


def test_percentiles_are_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50 and percentile(xs, 99) == 99 and percentile([], 50) is None
    assert summary([3.0, 1.0, 2.0])["p50"] == 2.0


def _server_frame(text: bytes) -> bytes:
    assert len(text) < 126
    return bytes((0x81, len(text))) + text


async def test_deferred_events_keep_their_arrival_stamps_and_order() -> None:
    """The generator's deferred decoding: a named event is stamped on arrival and
    handed to ``on_event`` only once the loop is quiet, in arrival order, with the
    arrival times; other events are handled at once; ``flush`` hands over the rest."""
    import asyncio

    from loadtests.client import Deferred, SioSocket

    got: list[tuple[str, object, float]] = []
    deferred = Deferred((b'["leaderboard",',), quiet_s=0.02)
    socks = [SioSocket(lambda n, d, tm, tw: got.append((n, d, tm)), deferred) for _ in range(2)]
    for s in socks:
        s._upgraded = True
    socks[0].data_received(_server_frame(b'42["leaderboard",{"version":1}]'))
    socks[1].data_received(_server_frame(b'42["leaderboard",{"version":1}]'))
    socks[0].data_received(_server_frame(b'42["question",{"index":0}]'))
    socks[0].data_received(_server_frame(b'42["leaderboard",{"version":2}]'))
    assert [(n, d) for n, d, _ in got] == [("question", {"index": 0})]
    assert len(deferred) == 3
    stamps = [item[2] for item in deferred._items]
    await asyncio.sleep(0.1)  # quiet for longer than quiet_s: handed over
    assert [(n, d) for n, d, _ in got[1:]] == [
        ("leaderboard", {"version": 1}),
        ("leaderboard", {"version": 1}),
        ("leaderboard", {"version": 2}),
    ]
    assert [t for _, _, t in got[1:]] == stamps  # the arrival times, not the decode time
    socks[1].data_received(_server_frame(b'42["leaderboard",{"version":3}]'))
    deferred.flush()
    assert got[-1][:2] == ("leaderboard", {"version": 3}) and not len(deferred)


def test_a_late_decoded_event_from_before_the_answer_does_not_reflect_it() -> None:
    t = LeaderboardTracker("me")
    t.on_answer(10.0, {"score": 900, "points": 900, "rank": 1, "version": 5})
    t.on_leaderboard(board(5, {"me": 900}), 9.99, 0)  # arrived before the send
    assert t.pending and not t.latencies_ms
    t.on_leaderboard(board(6, {"me": 900}), 10.03, 0)
    assert [round(x) for x in t.latencies_ms] == [30]


def test_a_top_10_answer_gets_the_hops_of_its_own_trace_only() -> None:
    t = LeaderboardTracker("me")
    trace = {
        "arrived_ms": 100_004, "committed_ms": 100_010, "produced_ms": 100_012,
        "acked_ms": 100_015, "read_ms": 100_018, "emitted_ms": 100_020,
    }  # fmt: skip
    # Sent at monotonic 10.0 = wall 100.000 s; the event is at 10.03 = wall 100.030 s.
    t.on_answer(10.0, {"score": 900, "points": 900, "rank": 2, "version": 5})
    t.on_leaderboard({**board(5, {"me": 900}), "trace": trace}, 10.03, 100.03)
    hops = {k: [round(x) for x in v] for k, v in t.top10_hops.items()}
    assert hops == {
        "send_arrive": [4], "arrive_commit": [6], "commit_produce": [2], "produce_ack": [3],
        "ack_read": [3], "read_emit": [2], "send_emit": [20], "emit_client": [10],
    }  # fmt: skip
    # A later version carries another answer's trace: only the split of the latency
    # (send -> emitted, emitted -> client). An answer below the top 10 has nothing the
    # others see: no hops. All are timed.
    t.on_answer(11.0, {"score": 1800, "points": 900, "rank": 1, "version": 8})
    later = {**trace, "arrived_ms": 101_006, "emitted_ms": 101_020}
    t.on_leaderboard({**board(9, {"me": 1800}), "trace": later}, 11.03, 101.03)
    t.on_answer(12.0, {"score": 10, "points": 10, "rank": 40, "version": 12})
    t.on_leaderboard({**board(12, {}), "trace": trace}, 12.02, 102.02)
    assert len(t.latencies_ms) == 3 and len(t.visible_ms) == 2
    assert [round(x) for x in t.top10_hops["send_emit"]] == [20, 20]
    assert [round(x) for x in t.top10_hops["emit_client"]] == [10, 10]
    assert all(
        len(v) == 1 for k, v in t.top10_hops.items() if k not in ("send_emit", "emit_client")
    )


def test_an_event_before_the_reply_still_lends_its_trace() -> None:
    t = LeaderboardTracker("me")
    trace = {"arrived_ms": 100_002, "read_ms": 100_010, "emitted_ms": 100_012}
    t.on_leaderboard({**board(3, {"me": 700}), "trace": trace}, 5.015, 50.015)
    for v in range(4, 20):  # old events lose their trace; the newest keep it
        t.on_leaderboard(board(v, {"me": 700}), 9.0, 90.0)
    assert t.events[0].trace is None and t.events[-1].trace is None
    t.on_leaderboard({**board(20, {"me": 800}), "trace": trace}, 10.02, 100.02)
    t.on_answer(10.0, {"score": 800, "points": 100, "rank": 1, "version": 20})
    assert [round(x) for x in t.top10_hops["emit_client"]] == [8]
    assert [round(x) for x in t.top10_hops["send_arrive"]] == [2]


def test_an_older_answers_trace_in_the_answers_own_version_is_not_its_own() -> None:
    t = LeaderboardTracker("me")
    older = {"arrived_ms": 99_950, "read_ms": 99_960, "emitted_ms": 100_020}
    t.on_answer(10.0, {"score": 900, "points": 900, "rank": 2, "version": 5})
    t.on_leaderboard({**board(5, {"me": 900}), "trace": older}, 10.03, 100.03)
    assert len(t.visible_ms) == 1
    assert set(t.top10_hops) == {"send_emit", "emit_client"}  # the split, not the hops


def test_a_top_10_answer_is_timed_at_every_other_player_of_its_session() -> None:
    def player(uid: str, *events: tuple[int, float]) -> LeaderboardTracker:
        t = LeaderboardTracker(uid)
        for version, t_wall in events:
            t.on_leaderboard(board(version, {uid: 0}), t_wall, t_wall)
        return t

    trackers = [
        ("s1", player("me", (5, 100.030))),  # the sender: not timed here
        ("s1", player("a", (4, 100.005), (6, 100.020))),  # coalesced past 5
        ("s1", player("b", (5, 100.040), (6, 100.045))),
        ("s1", player("late", (6, 100.050), (5, 100.100))),  # out of order: first receipt
        ("s1", player("never", (4, 100.010))),  # never got it: not a sample
        ("s2", player("other room", (9, 100.001))),
    ]
    got = at_others([("s1", 5, 100.0, "me"), ("s2", 9, 100.0, "x")], trackers)
    assert [sorted(round(x) for x in xs) for xs in got] == [[20, 40, 50], [1]]
    # An event received before the send cannot reflect it: the next one may.
    (later,) = at_others([("s1", 5, 100.045, "me")], trackers)
    assert sorted(later) == [pytest.approx(0, abs=0.01), pytest.approx(5, abs=0.01)]


def test_the_p99_at_the_others_names_the_answers_it_rests_on() -> None:
    fast = [[10.0] * 99 for _ in range(30)]
    s = at_others_summary([*fast, [10.0] * 60 + [80.0] * 39, []])  # one slow answer
    assert s["count"] == 30 * 99 + 99 and s["answers"] == 31
    assert s["p99"] == 80.0 and s["answers_at_p99"] == 1
    assert at_others_summary([])["answers_at_p99"] == 0
