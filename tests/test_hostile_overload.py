"""Overload: past its limits the stack answers fast (429 from nginx, a refused
socket.io connect) instead of timing out or falling over, and it recovers by
itself when the load stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import socketio

from infra.stack import ROOT, free_port, granian, http_ok, pid_alive
from tests.chaos.game import Game, Plan

pytestmark = pytest.mark.stack


@pytest_asyncio.fixture(scope="module")
async def answered(base_url: str) -> AsyncIterator[tuple[Game, str]]:
    """A self-paced session whose one player has answered one question."""
    g = Game(base_url, Plan(players=1, questions=2, seed=5))
    await g.setup(connect=False)
    p = g.players[0]
    q = await p.question()
    assert q is not None
    assert await p.answer(q["question_id"], [g.correct_choice(q)]) is not None
    yield g, q["question_id"]
    await g.close()


async def _hammer(
    c: httpx.AsyncClient,
    method: str,
    path: str,
    body: dict,
    headers: dict,
    seconds: float,
    workers: int,
) -> tuple[Counter, list[float], int]:
    """``workers`` loops sending the same request for ``seconds``: statuses, latencies, errors."""
    statuses: Counter = Counter()
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            try:
                r = await c.request(method, path, json=body, headers=headers)
            except httpx.TransportError:
                errors += 1
                continue
            latencies.append(time.monotonic() - t0)
            statuses[r.status_code] += 1
            if r.status_code == 429:
                assert r.headers.get("retry-after"), "429 without Retry-After"
                assert r.json()["status_code"] == 429

    await asyncio.gather(*[worker() for _ in range(workers)])
    return statuses, latencies, errors


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def test_retry_storm_on_answers_gets_fast_429s_and_recovers(
    answered: tuple[Game, str], base_url: str
) -> None:
    """One address repeating an answer as fast as it can: nginx's per-address limit
    answers 429 at once; nothing times out; the same call works again right after."""
    g, qid = answered
    p = g.players[0]
    path = f"/api/quiz/sessions/{g.session_id}/answers"
    body = {"question_id": qid, "choice": 0}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=5, limits=limits) as c:
        t0 = time.monotonic()
        statuses, lat, errors = await _hammer(c, "POST", path, body, p.headers, 4.0, 64)
        elapsed = time.monotonic() - t0
        rate = sum(statuses.values()) / elapsed
        print(
            f"\nretry storm: {dict(statuses)} in {elapsed:.1f}s ({rate:.0f}/s), "
            f"p50 {_p(lat, 0.5) * 1000:.0f} ms, p99 {_p(lat, 0.99) * 1000:.0f} ms, "
            f"max {max(lat) * 1000:.0f} ms, transport errors {errors}"
        )
        assert errors == 0, f"{errors} requests failed at the transport level"
        assert set(statuses) <= {200, 429}, statuses
        assert max(lat) < 2.0, f"slowest reply {max(lat):.2f}s: overload must not mean waiting"
        if rate > 300 * 1.3 + 600 / elapsed:  # beyond the answers limit (300 r/s, burst 600)
            assert statuses[429] > 0, f"{rate:.0f} r/s from one address and no 429"
        # Recovery by itself: the first reply after the storm that is not a 429.
        t1 = time.monotonic()
        while True:
            r = await c.post(path, json=body, headers=p.headers)
            if r.status_code != 429:
                break
            assert time.monotonic() - t1 < 5, "still limited 5 s after the load stopped"
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text
        assert r.json() == p.accepted[qid], "the repeat after the storm changed the reply"
    await asyncio.sleep(2)  # let the bucket refill for the tests that follow


async def test_login_burst_is_refused_fast_and_recovers(base_url: str) -> None:
    """The login limit (5 r/s, burst 20 per address) turns a burst of 80 into fast 429s."""
    body = {"username": "nobody-here", "password": "wrong password"}
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as c:
        t0 = time.monotonic()

        async def one() -> tuple[int, float]:
            s = time.monotonic()
            r = await c.post("/api/iam/token", json=body)
            return r.status_code, time.monotonic() - s

        results = await asyncio.gather(*[one() for _ in range(80)])
        statuses = Counter(s for s, _ in results)
        slowest = max(t for _, t in results)
        assert set(statuses) <= {401, 429}, statuses
        assert statuses[429] >= 80 - 20 - 5 * (time.monotonic() - t0) - 2, statuses
        assert slowest < 3.0, f"slowest reply {slowest:.2f}s"
        t1 = time.monotonic()
        while (await c.post("/api/iam/token", json=body)).status_code == 429:
            assert time.monotonic() - t1 < 5, "login still limited 5 s after the burst"
            await asyncio.sleep(0.1)
    await asyncio.sleep(4)  # the burst allowance refills (20 / 5 r/s) for later tests


@pytest.fixture
def tiny_sio(stack_dir: Path) -> Iterator[str]:
    """A separate socket.io process of this stack with QUIZ_SIO_MAX_CONNECTIONS=3."""
    port = free_port()
    log = open(stack_dir / "logs" / "sio-captest.log", "ab")
    env = {
        **os.environ,
        "QUIZ_SIO_MAX_CONNECTIONS": "3",
        "QUIZ_PROCESS_NAME": "sio-captest",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        granian("realtime_sio.app:app", port, websockets=True),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"{url}/socket.io/?EIO=4&transport=polling", expect_any=True):
            assert proc.poll() is None, "the socket.io process exited at start-up"
            assert time.monotonic() < deadline, "the socket.io process did not start"
            time.sleep(0.1)
        yield url
        assert proc.poll() is None, "the socket.io process died under the connection flood"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        assert not pid_alive(proc.pid)


async def test_socket_tier_refuses_connections_past_its_limit(
    tiny_sio: str, answered: tuple[Game, str]
) -> None:
    g, _ = answered
    token = g.players[0].tokens["access_token"]

    async def connect() -> socketio.AsyncClient:
        c = socketio.AsyncClient(reconnection=False)
        await c.connect(tiny_sio, auth={"token": token}, transports=["websocket"], wait_timeout=5)
        return c

    admitted = [await connect() for _ in range(3)]
    try:
        # Twenty more at once: every one refused, quickly, and the process stays up.
        t0 = time.monotonic()
        extra = await asyncio.gather(*[connect() for _ in range(20)], return_exceptions=True)
        took = time.monotonic() - t0
        refused = [e for e in extra if isinstance(e, socketio.exceptions.ConnectionError)]
        for c in extra:
            if isinstance(c, socketio.AsyncClient):
                await c.disconnect()
        assert len(refused) == 20, f"{20 - len(refused)} connections past the limit admitted"
        assert took < 5, f"refusing took {took:.1f}s"
        # The admitted sockets still work.
        ack = await admitted[0].call("join", {"session_id": g.session_id}, timeout=5)
        assert ack.get("ok") is True, ack
        # A slot frees up when a socket leaves: a new one gets in.
        await admitted.pop().disconnect()
        deadline = time.monotonic() + 5
        while True:
            try:
                admitted.append(await connect())
                break
            except socketio.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "a freed slot was never reusable"
                await asyncio.sleep(0.2)
    finally:
        for c in admitted:
            with contextlib.suppress(Exception):
                await c.disconnect()
