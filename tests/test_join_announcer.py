"""The join announcer's pacing (pure logic, no server): the first join of a quiet
session is announced at once, later ones coalesce into one trailing event, and the
interval grows with the room so a stadium's joins do not flood it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from contracts import SessionStateChanged
from services.quiz import announcements

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# its asserts are wall-clock intervals.
pytestmark = pytest.mark.alone


class _NoBoard:
    async def zcard(self, key: str) -> int:
        raise ConnectionError("no Redis in this test")  # the announcer keeps its count


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    got: list[tuple[float, int]] = []

    async def emit(event: str, payload: Any, session_id: str) -> None:
        got.append((time.monotonic(), payload.players))

    monkeypatch.setattr(announcements, "emit", emit)
    monkeypatch.setattr(announcements, "get_redis", lambda: _NoBoard())
    return got


def _joined(players: int) -> SessionStateChanged:
    return SessionStateChanged(session_id="s", state="lobby", players=players)


async def test_small_room_coalesces_at_the_base_interval(sent: list) -> None:
    a = announcements.JoinAnnouncer(interval_s=0.1, deliveries_per_s=1000)
    start = time.monotonic()
    for n in range(1, 6):
        await a.announce(_joined(n))
    assert [p for _, p in sent] == [1], "the first join at once, the rest held"
    await asyncio.sleep(0.4)
    assert [p for _, p in sent] == [1, 5], "one trailing event with the newest count"
    assert sent[1][0] - start >= 0.09


async def test_the_interval_grows_with_the_room(sent: list) -> None:
    a = announcements.JoinAnnouncer(interval_s=0.05, deliveries_per_s=1000)
    await a.announce(_joined(400))  # at once
    start = time.monotonic()
    await a.announce(_joined(401))  # a room of 400: at most 1000 deliveries/s -> 0.4 s
    await asyncio.sleep(0.2)
    assert [p for _, p in sent] == [400], "not yet: 400 / 1000 per s = 0.4 s apart"
    await asyncio.sleep(0.6)
    assert [p for _, p in sent] == [400, 401]
    assert sent[1][0] - start >= 0.3
