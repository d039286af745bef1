"""A join storm at test size: 300 sockets connect at once through nginx (both
socket.io processes) and all ``join`` one session at once; every join acks ok
with the current snapshot (the Redis pools wait instead of failing, and a join
reads role, snapshot and session view in one round trip)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import httpx
import pytest

from loadtests.client import SioSocket
from tests.conftest import next_loopback, unique
from tests.support.api import Api
from tests.support.game import Board, open_board

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# 300 sockets joining at once.
pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.alone]

# The full size is 2,000 within 2 s: QUIZRT_JOIN_STORM_SOCKETS=2000 ./dev test ...
SOCKETS = int(os.environ.get("QUIZRT_JOIN_STORM_SOCKETS", "300"))


@pytest.fixture(scope="module")
async def board() -> AsyncIterator[Board]:
    async with open_board() as b:
        yield b


async def guests(base_url: str, n: int) -> list[dict]:
    """``n`` guests, signed up from a few loopback addresses (nginx limits per address)."""
    out: list[dict] = []
    for start in range(0, n, 100):
        transport = httpx.AsyncHTTPTransport(local_address=next_loopback())
        async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=20) as c:
            replies = await asyncio.gather(
                *(
                    c.post("/api/iam/guests", json={"nickname": unique("storm")})
                    for _ in range(min(100, n - start))
                )
            )
        for r in replies:
            assert r.status_code == 201, r.text
            out.append(r.json())
    return out


async def test_a_storm_of_sockets_joining_at_once_all_ack_ok(
    base_url: str, api: Api, board: Board
) -> None:
    players = await guests(base_url, SOCKETS)
    s = await board.session(api.host(), players)
    u = urlparse(base_url)
    socks = [SioSocket() for _ in players]
    try:
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                sock.connect(u.hostname or "127.0.0.1", u.port or 80, p["access_token"])
                for sock, p in zip(socks, players, strict=True)
            )
        )
        t_connected = time.monotonic()
        acks = await asyncio.gather(
            *(sock.call("join", {"session_id": s.id}, timeout=30) for sock in socks)
        )
        t_joined = time.monotonic()
        bad = [a for a in acks if not (isinstance(a, dict) and a.get("ok"))]
        assert not bad, f"{len(bad)} of {SOCKETS} joins refused, e.g. {bad[:3]}"
        assert all(a["leaderboard"]["players"] == SOCKETS for a in acks)
        assert all(a["role"] == "player" for a in acks)
        print(
            f"\n{SOCKETS} sockets: connected in {t_connected - t0:.2f} s,"
            f" all joined {t_joined - t_connected:.2f} s later"
        )
    finally:
        for sock in socks:
            sock.close()
