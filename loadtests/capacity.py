"""How many sockets one socket.io process holds, and what they cost.

    python -m loadtests.capacity --sockets 5000 [--stack-dir .run/dev]

Opens N websockets straight to ``sio-1`` of a running stack (raw engine.io v4
frames over aiohttp: a full python-socketio client per socket would cost the
client more than the server), authenticates each with a guest token, joins them
all to one live session's room, then reports the process's memory (RSS of granian
and its workers) before and after, and how long one room broadcast takes to reach
the last socket. Bounded: it closes every socket and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

import aiohttp
import httpx
import psutil

from contracts import RoomLeaderboard
from infra.stack import read_layout, read_pids
from services.common.rooms import get_emitter


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        total += child.memory_info().rss
    return total / 2**20


def setup_session(base_url: str) -> tuple[str, str]:
    """A live session with one joined guest: (session id, the guest's access token)."""
    with httpx.Client(base_url=base_url, timeout=20) as http:
        user = f"cap{int(time.time() * 1000)}"
        http.post("/api/iam/users", json={"username": user, "password": "capacity pw 1"})
        host = http.post("/api/iam/token", json={"username": user, "password": "capacity pw 1"})
        auth = {"Authorization": f"Bearer {host.json()['access_token']}"}
        quiz = http.post(
            "/api/quiz/quizzes",
            headers=auth,
            json={
                "title": "capacity",
                "questions": [{"text": "q", "choices": ["a", "b"], "answer": 0}],
            },
        )
        session = http.post(
            "/api/quiz/sessions", headers=auth, json={"quiz_id": quiz.json()["id"], "mode": "live"}
        ).json()
        guest = http.post("/api/iam/guests", json={"nickname": "capacity"}).json()
        r = http.post(
            "/api/quiz/sessions/join",
            json={"session_id": session["id"]},
            headers={"Authorization": f"Bearer {guest['access_token']}"},
        )
        r.raise_for_status()
        return session["id"], guest["access_token"]


class Socket:
    """One engine.io websocket that joins a room, answers pings and notes broadcasts."""

    def __init__(self, http: aiohttp.ClientSession, url: str):
        self.http = http
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.got_at: dict[int, float] = {}
        self.task: asyncio.Task | None = None

    async def open(self, token: str, session_id: str) -> None:
        self.ws = await self.http.ws_connect(self.url, max_msg_size=1 << 20)
        assert (await self.ws.receive_str()).startswith("0")  # engine.io open
        await self.ws.send_str("40" + json.dumps({"token": token}))
        reply = await self.ws.receive_str()
        if not reply.startswith("40"):
            raise RuntimeError(f"refused: {reply}")
        await self.ws.send_str("420" + json.dumps(["join", {"session_id": session_id}]))
        ack = await self.ws.receive_str()
        if '"ok":true' not in ack:
            raise RuntimeError(f"join failed: {ack[:200]}")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            data = msg.data
            if data == "2":
                await self.ws.send_str("3")
            elif data.startswith('42["leaderboard"'):
                version = json.loads(data[2:])[1]["version"]
                self.got_at[version] = time.perf_counter()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            self.task.cancel()


async def _all_received(opened: list[Socket], version: int) -> None:
    while sum(version in s.got_at for s in opened) < len(opened):  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def measure(stack_dir: Path, sockets: int, batch: int = 200) -> dict:
    """Open ``sockets`` sockets on sio-1 and report memory and one broadcast's spread."""
    lay = read_layout(stack_dir)
    port = lay.sio_ports[0]
    pid = read_pids(stack_dir)["sio-1"]
    base_url = lay.base_url
    session_id, token = await asyncio.to_thread(setup_session, base_url)
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    before = rss_mb(pid)
    conn = aiohttp.TCPConnector(limit=0)
    opened: list[Socket] = []
    failures = 0
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=conn) as http:
        try:
            for start in range(0, sockets, batch):
                group = [Socket(http, url) for _ in range(min(batch, sockets - start))]
                results = await asyncio.gather(
                    *(s.open(token, session_id) for s in group), return_exceptions=True
                )
                for s, r in zip(group, results, strict=True):
                    if isinstance(r, BaseException):
                        failures += 1
                    else:
                        opened.append(s)
            connect_s = time.perf_counter() - t0
            await asyncio.sleep(2)  # let the server settle before reading its memory
            after = rss_mb(pid)
            # One room broadcast: from the emit to the last socket that got it.
            version = 1 << 50
            t_emit = time.perf_counter()
            await get_emitter().emit(
                "leaderboard",
                RoomLeaderboard(session_id=session_id, version=version, players=1, entries=[]),
                session_id,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_all_received(opened, version), 30)
            arrived = [s.got_at[version] - t_emit for s in opened if version in s.got_at]
        finally:
            await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
    n = len(opened)
    return {
        "sockets_requested": sockets,
        "sockets_open": n,
        "failures": failures,
        "connect_s": round(connect_s, 1),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "mb_per_1000_sockets": round((after - before) / n * 1000, 1) if n else None,
        "broadcast_received": len(arrived),
        "broadcast_last_ms": round(max(arrived) * 1000, 1) if arrived else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sockets", type=int, default=5000)
    ap.add_argument("--stack-dir", type=Path, default=Path(".run/dev"))
    a = ap.parse_args()
    print(json.dumps(asyncio.run(measure(a.stack_dir, a.sockets)), indent=1))


if __name__ == "__main__":
    main()
