"""Start the floor servers beside a stack and measure them with the bench's workers.

HTTP floor: ``bare_http`` on granian with ``infra.stack.granian``'s settings (the
same function starts the real services), as many processes as the quiz service
has, behind an nginx rendered from the stack's own template (same location
block, same rate-limit zone with a rate that never binds, same keepalive
pools). Load: closed loop, the same worker processes and client code as the
scenarios.

Gateway variant: the same bare POST through a second nginx with the gateway's
check on (``auth_request`` to the stack's real IAM, one guest token), next to
the first nginx with it off, in the same run: what the check adds per request.

socket.io floor: ``bare_sio`` on granian with the websocket settings of the
stack, as many processes as the socket.io tier has, rooms shared through
``AsyncRedisManager`` on the stack's Redis; a write-only manager in this process
emits a leaderboard-sized event to one room of N clients connected through that
nginx. Measured: emit -> receipt at each client (one machine, one clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import socketio

from infra.stack import (
    Layout,
    Stack,
    free_port,
    granian,
    http_ok,
    nginx_binary,
    read_layout,
    read_pids,
    render_nginx,
    sio_unix_sockets,
)
from loadtests.floors import FLOOR_CHANNEL as CHANNEL
from loadtests.pool import WorkerPool
from loadtests.probe import CpuMeter, rss_mb
from loadtests.stats import summary

ANSWER_PATH = "/api/quiz/sessions/floor/answers"
FLOOR_RATES = {
    "QUIZ_RATE_ANSWERS": "100000r/s:100000",
    "QUIZ_RATE_API": "100000r/s:100000",
}


class FloorServers:
    """The bare servers and their nginx, managed like a stack (logs, stack.json)."""

    def __init__(self, run_dir: Path, redis_url: str, http_procs: int, sio_procs: int):
        self.gateway_port: int | None = None
        self.layout = Layout(
            run_dir=run_dir,
            http_port=free_port(),
            pg_port=0,
            redis_port=0,
            kafka_port=0,
            kafka_ctrl_port=0,
            iam_ports=[free_port()],
            quiz_ports=[free_port() for _ in range(http_procs)],
            leaderboard_ports=[free_port()],
            sio_ports=[free_port() for _ in range(sio_procs)],
            # nginx reaches the bare tier as the stack's reaches the product's.
            sio_sockets=sio_unix_sockets(run_dir, sio_procs),
            consumers=0,
            external={
                "redis_url": redis_url,
                "database_url": "postgresql://-",
                "kafka_bootstrap": "-",
            },
        )
        self.stack = Stack(self.layout)

    @property
    def port(self) -> int:
        return self.layout.http_port

    async def start(self) -> None:
        lay = self.layout
        for i, p in enumerate(lay.quiz_ports, 1):
            self.stack.spawn(f"bare-http-{i}", granian("loadtests.floors.bare_http:app", p))
        for i, p in enumerate(lay.sio_ports, 1):
            uds = lay.sio_sockets[i - 1] if lay.sio_sockets else ""  # what nginx proxies to
            argv = granian("loadtests.floors.bare_sio:app", p, websockets=True, uds=uds)
            self.stack.spawn(f"bare-sio-{i}", argv)
        # The floor measures the servers, not the limits: its zones never bind,
        # whatever limits the stack under test runs with.
        conf = _render_floor_nginx(lay, gateway_check=False)
        self.stack.spawn(
            "nginx",
            [nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
            group="edge",
        )
        urls = [f"http://127.0.0.1:{p}/schema" for p in lay.quiz_ports]
        if not lay.sio_sockets:
            urls += [
                f"http://127.0.0.1:{p}/socket.io/?EIO=4&transport=polling" for p in lay.sio_ports
            ]
        urls.append(f"http://127.0.0.1:{lay.http_port}/socket.io/?EIO=4&transport=polling")
        deadline = time.monotonic() + 60
        for path in lay.sio_sockets:
            while not await asyncio.to_thread(os.path.exists, path):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"floor server not listening: {path} ({lay.run_dir})")
                await asyncio.sleep(0.2)
        for url in urls:
            while not await asyncio.to_thread(http_ok, url, True):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"floor server not ready: {url} (logs in {lay.run_dir})")
                await asyncio.sleep(0.2)

    async def start_gateway(self, iam_ports: list[int]) -> int:
        """A second nginx in front of the same bare servers with the gateway's check
        on, asking a running stack's IAM; returns its port."""
        lay = dataclasses.replace(
            self.layout,
            run_dir=self.layout.run_dir / "gateway",
            http_port=free_port(),
            iam_ports=iam_ports,
        )
        conf = _render_floor_nginx(lay, gateway_check=True)
        self.stack.spawn(
            "nginx-gateway",
            [nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
            group="edge",
        )
        url = f"http://127.0.0.1:{lay.http_port}/socket.io/?EIO=4&transport=polling"
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(http_ok, url, True):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway floor nginx not ready (logs in {lay.run_dir})")
            await asyncio.sleep(0.2)
        self.gateway_port = lay.http_port
        return lay.http_port

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.stack.procs.items()}

    def stop(self) -> None:
        for name in list(self.stack.procs):
            self.stack.stop(name, timeout=5)


def _render_floor_nginx(lay: Layout, gateway_check: bool) -> Path:
    """The stack's nginx.conf for ``lay``; its zones never bind (the floor measures
    the servers, not the limits), and the gateway's check on or off."""
    (lay.run_dir / "logs").mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in FLOOR_RATES}
    os.environ.update(FLOOR_RATES)
    try:
        conf = render_nginx(lay)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not gateway_check:
        text = conf.read_text()
        assert AUTH_REQUEST in text, "the template's gateway check moved"
        conf.write_text(text.replace(AUTH_REQUEST, "auth_request off;"))
    return conf


AUTH_REQUEST = "auth_request /_gateway/auth;"


async def gateway_floor(
    pool: WorkerPool,
    floors: FloorServers,
    stack_dir: Path,
    base_url: str,
    connections: int,
    duration: float,
) -> dict:
    """The bare POST without and with the gateway's check, one guest token, same run.

    With a cached verdict (every request after the first), the check is nginx's
    subrequest and cache lookup only: IAM's CPU in the interval shows whether any
    request took the Python hop."""
    gateway_port = await floors.start_gateway(read_layout(stack_dir).iam_ports)
    iam_pids = {n: pid for n, pid in read_pids(stack_dir).items() if n.startswith("iam-")}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        r = await c.post("/api/iam/guests", json={"nickname": "floor"})
        r.raise_for_status()
        token = r.json()["access_token"]
    runs: dict[str, Any] = {}
    cost: dict[str, float] = {}
    for name, port in (("without_check", floors.port), ("with_check", gateway_port)):
        meter = CpuMeter({**floors.pids(), **iam_pids})
        run = await http_floor(pool, port, connections, duration, meter=meter, token=token)
        run["iam_cpu_ms_per_request"] = _per_unit(
            run["cpu_pct_of_one_core"], "iam", meter, run["requests"], 1e3
        )
        cost[name] = sum(
            run[f] or 0.0
            for f in ("cpu_ms_per_request", "nginx_cpu_ms_per_request", "iam_cpu_ms_per_request")
        )
        runs[name] = run
    runs["added_cpu_ms_per_request"] = round(cost["with_check"] - cost["without_check"], 4)
    return runs


async def http_floor(
    pool: WorkerPool,
    port: int,
    connections: int,
    duration: float,
    warmup: float = 2.0,
    meter: CpuMeter | None = None,
    token: str = "x",
) -> dict:
    """Closed-loop POSTs of an answer body through nginx: accepted/s and round trip;
    with ``meter``, the servers' CPU per request too."""
    per = max(1, connections // len(pool.workers))
    body = {"question_id": str(uuid.uuid4()), "choice": 1}
    args: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "path": ANSWER_PATH,
        "body": body,
        "connections": per,
        "token": token,
    }
    await pool.ask("http_floor", "result", duration=warmup, **args)
    if meter:
        meter.start()
    replies = await pool.ask("http_floor", "result", duration=duration, **args)
    cpu = meter.stop() if meter else {}
    ok = sum(r["ok"] for r in replies)
    elapsed = max(r["elapsed"] for r in replies)
    status: dict[str, int] = {}
    for r in replies:
        for k, v in r["status"].items():
            status[k] = status.get(k, 0) + v
    return {
        "requests": ok,
        "requests_per_s": round(ok / elapsed, 1),
        "connections": per * len(pool.workers),
        "duration_s": round(elapsed, 1),
        "rtt_ms": summary(x for r in replies for x in r["rtt_ms"]),
        "status": status,
        "cpu_pct_of_one_core": cpu,
        "cpu_ms_per_request": _per_unit(cpu, "bare-http", meter, ok, 1e3),
        "nginx_cpu_ms_per_request": _per_unit(cpu, "nginx", meter, ok, 1e3),
    }


def _per_unit(
    cpu: dict[str, float], prefix: str, meter: CpuMeter | None, units: int, scale: float
) -> float | None:
    """CPU of the processes named ``prefix*`` per unit of work (scale 1e3: ms, 1e6: us)."""
    if not meter or not units:
        return None
    pct = sum(v for k, v in cpu.items() if k.startswith(prefix))
    return round(pct / 100.0 * meter.wall * scale / units, 3)


def leaderboard_sized_payload(seq: int, players: int) -> dict:
    """An event shaped and sized like a real ``leaderboard`` (10 entries)."""
    return {
        "seq": seq,
        "t": time.time() * 1000.0,
        "session_id": str(uuid.uuid4()),
        "version": 1_700_000_000_000_000 + seq,
        "players": players,
        "entries": [
            {
                "rank": i + 1,
                "user_id": str(uuid.uuid4()),
                "nickname": f"player-{i:04d}",
                "score": 10_000 - i * 137,
            }
            for i in range(10)
        ],
    }


async def sio_floor(
    pool: WorkerPool,
    port: int,
    redis_url: str,
    clients: int,
    broadcasts: int = 20,
    interval: float = 0.3,
    meter: CpuMeter | None = None,
    sio_pids: list[int] | None = None,
) -> dict:
    """One room of ``clients`` sockets; ``broadcasts`` emits through Redis; latencies.
    With ``sio_pids``, the servers' resident memory before and after the connects."""
    rss_before = rss_mb(sio_pids) if sio_pids else None
    room = f"floor{uuid.uuid4().hex[:8]}"
    per = [
        clients // len(pool.workers) + (1 if i < clients % len(pool.workers) else 0)
        for i in range(len(pool.workers))
    ]
    ready = await pool.ask(
        "sio_connect", "ready", [{"n": n} for n in per], host="127.0.0.1", port=port, room=room
    )
    connected = sum(r["ready"] for r in ready)
    rss_after = rss_mb(sio_pids) if sio_pids else None
    emitter = socketio.AsyncRedisManager(redis_url, channel=CHANNEL, write_only=True)
    await asyncio.sleep(0.5)
    if meter:
        meter.start()
    for seq in range(broadcasts):
        await emitter.emit(
            "floor",
            leaderboard_sized_payload(seq, connected),
            room=f"session:{room}",
            namespace="/",
        )
        await asyncio.sleep(interval)
    await asyncio.sleep(1.0)
    cpu = meter.stop() if meter else {}
    replies = await pool.ask("sio_collect", "result")
    per_seq: dict[str, list[float]] = {}
    for r in replies:
        for k, v in r["latencies"].items():
            per_seq.setdefault(k, []).extend(v)
    last = [max(v) for v in per_seq.values() if v]
    all_lat = [x for v in per_seq.values() for x in v]
    delivered = len(all_lat)
    return {
        "clients": connected,
        "connect_failures": sum(r["failed"] for r in ready),
        "broadcasts": broadcasts,
        "delivered": delivered,
        "expected": connected * broadcasts,
        "emit_to_last_client_ms": summary(last),
        "emit_to_client_ms": summary(all_lat),
        "disconnects": sum(r["disconnects"] for r in replies),
        "rss_mb_before_after_connect": [rss_before, rss_after],
        "rss_mb_per_1000_sockets_added": round((rss_after - rss_before) / connected * 1000, 1)
        if rss_after is not None and rss_before is not None and connected
        else None,
        "cpu_pct_of_one_core": cpu,
        "cpu_us_per_delivery": _per_unit(cpu, "bare-sio", meter, delivered, 1e6),
    }
