"""A load generator process: ``python -m loadtests.worker``.

The bench starts a few of these so that clients run beside, not inside, the
process that drives the hosts and measures the stack. Commands arrive as JSON
lines on stdin; replies and progress leave as JSON lines on stdout:

    {"cmd": "players", ...}   sign in, join and connect players  -> progress..., ready
    {"cmd": "go", "v0": {}}   start (self-paced loops); v0: versions before play -> started
    {"cmd": "drain"}          wait for answers and snapshots to settle           -> drained
    {"cmd": "audit", ...}     compare received versions with the session union   -> result
    {"cmd": "http_floor"}     closed-loop POSTs for a while                      -> result
    {"cmd": "sio_connect"}    plain sockets in one room (the socket.io floor)    -> ready
    {"cmd": "sio_collect"}    what those sockets received                        -> result
    {"cmd": "close"}          close everything and exit
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from typing import Any

import msgspec

from loadtests.client import Deferred, HttpConn, SioSocket
from loadtests.players import Player, Stats
from loadtests.scenarios import Scenario
from loadtests.tracker import at_others


def send(event: str, **data: Any) -> None:
    sys.stdout.buffer.write(msgspec.json.encode({"event": event, **data}) + b"\n")
    sys.stdout.buffer.flush()


class Worker:
    def __init__(self) -> None:
        self.players: list[Player] = []
        self.stats = Stats()
        self.failed: list[str] = []
        self.v0: dict[str, int] = {}
        self.floor_socks: list[SioSocket] = []
        self.floor_lat: dict[int, list[float]] = {}
        # Leaderboard-sized events (the scenarios' and the floor's) are decoded after
        # each burst, not between two sockets' receipts (see ``Deferred``).
        self.deferred = Deferred((b'["leaderboard",', b'["floor",'))

    # ---- scenario players

    async def cmd_players(
        self,
        host: str,
        port: int,
        scenario: dict,
        assign: list,
        seed: int = 0,
        concurrency: int = 48,
    ) -> None:
        fields = {k: v for k, v in scenario.items() if k in Scenario.__dataclass_fields__}
        sc = Scenario(**{**fields, "answer_after_s": tuple(fields["answer_after_s"])})
        for p in self.players:  # a previous scenario's players
            p.close()
        self.stats, self.failed, self.v0 = Stats(), [], {}
        rng = random.Random(seed)
        self.players = [
            Player(i, host, port, sid, sc, self.stats, random.Random(rng.random()), self.deferred)
            for i, sid in assign
        ]
        sem = asyncio.Semaphore(concurrency)
        done = 0
        last = time.monotonic()

        async def one(p: Player) -> None:
            nonlocal done, last
            async with sem:
                try:
                    await p.setup()
                except Exception as e:
                    self.failed.append(f"player {p.idx}: {e!r}"[:300])
                    p.close()
            done += 1
            if time.monotonic() - last > 1.0:
                last = time.monotonic()
                send("progress", ready=done, failed=len(self.failed))

        await asyncio.gather(*(one(p) for p in self.players))
        failed_idx = {p.idx for p in self.players if not p.sock.sid or p.sock.closed}
        self.players = [p for p in self.players if p.idx not in failed_idx]
        acks: dict[str, int] = {}
        for p in self.players:
            acks[p.session_id] = max(acks.get(p.session_id, 0), p.tracker.ack_version)
        send(
            "ready",
            ready=len(self.players),
            failed=len(self.failed),
            failures=self.failed[:10],
            ack_versions=acks,
        )

    async def cmd_go(self, v0: dict[str, int]) -> None:
        self.v0 = v0
        if self.players and self.players[0].sc.mode == "self_paced":
            for p in self.players:
                p._spawn(p.play_self_paced())
        send("started")

    async def cmd_drain(self, wait_s: float = 15.0, quiet_s: float = 1.0) -> None:
        """Wait until no answer is scheduled or in flight, every answer found its
        snapshot (or ``wait_s``), and no snapshot arrived for ``quiet_s``."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            self.deferred.flush()
            busy = any(p.tasks for p in self.players) or self.stats.in_flight
            pending = sum(len(p.tracker.pending) for p in self.players)
            last = max(
                (p.tracker.events[-1].t_mono for p in self.players if p.tracker.events), default=0.0
            )
            if not busy and not pending and time.perf_counter() - last > quiet_s:
                break
            await asyncio.sleep(0.1)
        self.deferred.flush()
        union: dict[str, set[int]] = {}
        for p in self.players:
            union.setdefault(p.session_id, set()).update(
                p.tracker.versions_after(self.v0.get(p.session_id, 0))
            )
        send(
            "drained",
            versions={s: sorted(v) for s, v in union.items()},
            top10_sent=self.stats.top10_sent,
        )

    async def cmd_audit(
        self, union: dict[str, list[int]], top10_sent: list[list[Any]] | None = None
    ) -> None:
        """Every client's versions against its session's union; the raw measurements.
        ``top10_sent``: every worker's top-10 answers, timed here at these players."""
        self.deferred.flush()
        want = {s: set(v) for s, v in union.items()}
        st = self.stats
        outcome: dict[str, int] = {}
        delivered = expected = 0
        short: list[str] = []
        spread: dict[str, list[float]] = {}  # "session version" -> [first wall, last wall]
        disconnects = 0
        reasons: dict[str, int] = {}
        for p in self.players:
            for k, v in p.tracker.outcome().items():
                outcome[k] = outcome.get(k, 0) + v
            v0 = self.v0.get(p.session_id, 0)
            got = p.tracker.versions_after(v0)
            exp = want.get(p.session_id, set())
            delivered += len(got & exp)
            expected += len(exp)
            if exp - got and len(short) < 10:
                short.append(f"{p.user_id}: missing versions {sorted(exp - got)[:5]}")
            for ev in p.tracker.events:
                if ev.version > v0:
                    key = f"{p.session_id} {ev.version}"
                    s = spread.get(key)
                    if s is None:
                        spread[key] = [ev.t_wall, ev.t_wall]
                    else:
                        s[0] = min(s[0], ev.t_wall)
                        s[1] = max(s[1], ev.t_wall)
            if p.sock.closed:
                disconnects += 1
                reasons[p.sock.close_reason[:80]] = reasons.get(p.sock.close_reason[:80], 0) + 1
        send(
            "result",
            players=len(self.players),
            failed=len(self.failed),
            sent=st.sent,
            accepted=st.accepted,
            status=st.status,
            rtt_ms=st.rtt_ms,
            replies_wall=st.replies_wall,
            a2l_ms=[x for p in self.players for x in p.tracker.latencies_ms],
            a2l_visible_ms=[x for p in self.players for x in p.tracker.visible_ms],
            a2l_visible_others_ms=at_others(
                ((a[0], a[1], a[2], a[3]) for a in top10_sent or ()),
                ((p.session_id, p.tracker) for p in self.players),
            ),
            hops_ms=st.hops,
            top10_hops_ms=st.top10_hops,
            outcome=outcome,
            events_delivered=delivered,
            events_expected=expected,
            short=short,
            spread=spread,
            question_lag_ms=st.question_lag_ms,
            disconnects=disconnects,
            disconnect_reasons=reasons,
            errors=st.errors,
            events=st.events,
        )

    # ---- floors

    async def cmd_http_floor(
        self,
        host: str,
        port: int,
        path: str,
        body: dict,
        connections: int,
        duration: float,
        token: str = "x",
    ) -> None:
        lat: list[float] = []
        statuses: dict[str, int] = {}
        payload = msgspec.json.encode(body)
        t_end = time.perf_counter() + duration

        async def loop() -> None:
            conn = HttpConn(host, port)
            try:
                while time.perf_counter() < t_end:
                    t0 = time.perf_counter()
                    status, _, _ = await conn.request("POST", path, payload, token)
                    if status == 200:
                        lat.append((time.perf_counter() - t0) * 1000.0)
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
            finally:
                conn.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        send("result", ok=len(lat), elapsed=time.perf_counter() - t0, rtt_ms=lat, status=statuses)

    async def cmd_sio_connect(self, host: str, port: int, n: int, room: str) -> None:
        def on_event(name: str, data: Any, t_mono: float, t_wall: float) -> None:
            if name == "floor":
                self.floor_lat.setdefault(data["seq"], []).append(t_wall * 1000.0 - data["t"])

        sem = asyncio.Semaphore(64)

        async def one() -> None:
            s = SioSocket(on_event, self.deferred)
            async with sem:
                await s.connect(host, port, "floor")
                await s.call("join", {"session_id": room})
            self.floor_socks.append(s)

        results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        send("ready", ready=len(self.floor_socks), failed=len(errors), failures=errors[:5])

    async def cmd_sio_collect(self) -> None:
        self.deferred.flush()
        drops = sum(1 for s in self.floor_socks if s.closed)
        send("result", latencies={str(k): v for k, v in self.floor_lat.items()}, disconnects=drops)
        self.floor_lat = {}
        for s in self.floor_socks:
            s.close()
        self.floor_socks = []

    def close(self) -> None:
        for p in self.players:
            p.close()
        for s in self.floor_socks:
            s.close()


async def main() -> None:
    w = Worker()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    send("hello", pid=os.getpid())
    while True:
        line = await reader.readline()
        if not line:
            break
        msg = msgspec.json.decode(line)
        cmd = msg.pop("cmd")
        if cmd == "close":
            break
        handler = getattr(w, f"cmd_{cmd}")
        try:
            await handler(**msg)
        except Exception as e:
            send("error", cmd=cmd, error=repr(e)[:2000])
    w.close()
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
