"""Unit tests of the socket tier's pieces that need no server: the per-process
limits and msgspec as python-socketio's JSON module."""

from __future__ import annotations

import pytest
import socketio

from contracts import LeaderboardEntry, RoomLeaderboard, to_payload
from realtime_sio import jsonmsg
from realtime_sio.limits import ConnectionCap, EventRateLimit


def test_connection_cap_refuses_past_the_limit_and_frees_on_release() -> None:
    cap = ConnectionCap(2)
    assert cap.admit("a") and cap.admit("b")
    assert not cap.admit("c")
    cap.release("a")
    cap.release("a")  # a second disconnect of the same socket changes nothing
    assert len(cap) == 1
    assert cap.admit("c") and not cap.admit("d")


def test_rate_limit_allows_a_burst_then_refills_with_time() -> None:
    now = [1000.0]
    limit = EventRateLimit(5, clock=lambda: now[0])
    assert [limit.allow("s") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limit.allow("other")  # per socket
    now[0] += 0.2  # one token back at 5/s
    assert limit.allow("s") and not limit.allow("s")
    now[0] += 10  # refills up to the burst, not beyond
    assert sum(limit.allow("s") for _ in range(10)) == 5
    limit.forget("s")
    assert limit.allow("s")


def test_msgspec_json_module_matches_what_python_socketio_expects() -> None:
    board = RoomLeaderboard(
        session_id="s",
        version=2**52,
        players=1,
        entries=[LeaderboardEntry(rank=1, user_id="u", nickname="é", score=5)],
    )
    text = jsonmsg.dumps(["leaderboard", to_payload(board)], separators=(",", ":"))
    assert isinstance(text, str) and " " not in text
    assert jsonmsg.loads(text)[1]["version"] == 2**52
    assert jsonmsg.loads(text.encode()) == jsonmsg.loads(text)
    with pytest.raises(ValueError):
        jsonmsg.loads("[1,")
    # A socket.io packet round trip through the module, as the server does it.
    cls = socketio.packet.Packet
    saved = cls.json
    try:
        cls.json = jsonmsg
        pkt = cls(socketio.packet.EVENT, data=["join", {"session_id": "x"}], id=7)
        assert cls(encoded_packet=pkt.encode()).data == ["join", {"session_id": "x"}]
    finally:
        cls.json = saved
