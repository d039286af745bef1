"""One simulated guest player of the bench's generator: HTTP calls and one socket.

A player signs in as a guest, joins its session over HTTP, connects its socket,
``join``s the room (the ack carries the current snapshot), then answers: in live
mode at a random moment after each ``question`` event, in self-paced mode in a
loop of ``GET .../question`` and answer until there is no question left.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec

from loadtests.client import Deferred, HttpConn, SioSocket
from loadtests.playercore import Retry, join_reply, retry_after_s
from loadtests.scenarios import Scenario, correct_choice
from loadtests.tracker import LeaderboardTracker, SentAnswer, add_hop, server_hops


@dataclass
class Stats:
    """What the players of one process saw (merged by the bench)."""

    sent: int = 0
    accepted: int = 0
    status: dict[str, int] = field(default_factory=dict)
    rtt_ms: list[float] = field(default_factory=list)
    replies_wall: list[tuple[int, float, float]] = field(default_factory=list)  # (q, sent, got)
    question_lag_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    in_flight: int = 0
    events: dict[str, int] = field(default_factory=dict)  # received, by event name
    # Latency budget per hop (ms): the trace of each snapshot (once per session and
    # version in this process) and, per receipt, the emit -> this client hop.
    hops: dict[str, list[float]] = field(default_factory=dict)
    # The same for the answers that ranked in the top 10 (each player's tracker adds to it).
    top10_hops: dict[str, list[float]] = field(default_factory=dict)
    traced: set[tuple[str, int]] = field(default_factory=set)
    # The answers whose reply carries a version and ranked in the top 10, to be timed
    # at every other player (loadtests.tracker.at_others).
    top10_sent: list[SentAnswer] = field(default_factory=list)

    def on_trace(self, data: dict, t_wall: float) -> None:
        trace = data.get("trace")
        if not trace:
            return
        got = t_wall * 1000.0
        add_hop(self.hops, "emit_client", trace.get("emitted_ms", 0), got)
        key = (data["session_id"], data["version"])
        if key in self.traced:
            return
        self.traced.add(key)
        for name, a, b in (
            *server_hops(trace),
            ("arrive_client", trace.get("arrived_ms", 0), got),
        ):
            add_hop(self.hops, name, a, b)

    def error(self, what: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(what)


class Player:
    """A guest with one keep-alive HTTP connection and one socket."""

    def __init__(
        self,
        idx: int,
        host: str,
        port: int,
        session_id: str,
        scenario: Scenario,
        stats: Stats,
        rng: random.Random,
        deferred: Deferred | None = None,
    ):
        self.idx = idx
        self.host = host
        self.port = port
        self.session_id = session_id
        self.sc = scenario
        self.stats = stats
        self.rng = rng
        self.http = HttpConn(host, port)
        self.sock = SioSocket(self._on_event, deferred)
        self.token = ""
        self.user_id = ""
        self.tracker = LeaderboardTracker("", top10_hops=stats.top10_hops)
        self.answered: set[str] = set()
        self.ended = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    async def setup(self) -> None:
        """Guest tokens, HTTP join, socket connect and room join."""
        tokens = await self.http.call(
            "POST", "/api/iam/guests", {"nickname": f"{self.sc.name[:12]}-{self.idx}"}
        )
        self.token = tokens["access_token"]
        self.user_id = tokens["user"]["id"]
        self.tracker.user_id = self.user_id
        await self.http.call(
            "POST", "/api/quiz/sessions/join", {"session_id": self.session_id}, self.token
        )
        await self.sock.connect(self.host, self.port, self.token)
        retry = Retry(first=0.2, tries=30, jitter=True, give_up_after=600)
        while True:
            reply = join_reply(await self.sock.call("join", {"session_id": self.session_id}))
            if reply.ok:
                break
            if reply.retry_after is None or not retry.again(429, reply.retry_after):
                raise RuntimeError(f"join refused: {reply.error}")
            await asyncio.sleep(retry.wait)
        self.tracker.ack_version = reply.version

    # ---- events

    def _on_event(self, name: str, data: Any, t_mono: float, t_wall: float) -> None:
        ev = self.stats.events
        ev[name] = ev.get(name, 0) + 1
        if name == "leaderboard":
            self.tracker.on_leaderboard(data, t_mono, t_wall)
            self.stats.on_trace(data, t_wall)
        elif name == "question":
            if "server_time_ms" in data:
                self.stats.question_lag_ms.append(t_wall * 1000.0 - data["server_time_ms"])
            if self.sc.mode == "live" and data["question_id"] not in self.answered:
                self.answered.add(data["question_id"])
                lo, hi = self.sc.answer_after_s
                delay = self.rng.uniform(lo, hi)
                asyncio.get_running_loop().call_later(
                    delay, self._spawn, self.answer(data["question_id"], data["index"])
                )
        elif name == "session_ended":
            self.ended.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ---- answering

    async def answer(self, question_id: str, index: int) -> None:
        """Send one answer (correct with the scenario's probability) and time it."""
        choice = correct_choice(index)
        if self.rng.random() > self.sc.p_correct:
            choice = (choice + 1) % 4
        st = self.stats
        st.sent += 1
        st.in_flight += 1
        t_wall = time.time()
        t0 = time.perf_counter()
        try:
            status, body, _ = await self.http.request(
                "POST",
                f"/api/quiz/sessions/{self.session_id}/answers",
                {"question_id": question_id, "choice": choice},
                self.token,
            )
        except Exception as e:  # a dropped connection is a result, not a crash
            st.status["conn-error"] = st.status.get("conn-error", 0) + 1
            st.error(f"answer: {e!r}")
            return
        finally:
            st.in_flight -= 1
        t1 = time.perf_counter()
        key = str(status)
        st.status[key] = st.status.get(key, 0) + 1
        if status != 200:
            st.error(f"answer HTTP {status}: {body[:160]!r}")
            return
        st.accepted += 1
        st.rtt_ms.append((t1 - t0) * 1000.0)
        st.replies_wall.append((index, t_wall, t_wall + (t1 - t0)))
        version = self.tracker.on_answer(t0, msgspec.json.decode(body))
        if version:
            st.top10_sent.append((self.session_id, version, t_wall, self.user_id))

    async def play_self_paced(self) -> None:
        """Self-paced: ask for the next question, think, answer; until none is left."""
        base = f"/api/quiz/sessions/{self.session_id}"
        while True:
            retry = Retry(first=0.5, most=2.0, give_up_after=60)
            while True:
                status, body, hint = await self.http.request(
                    "GET", f"{base}/question", token=self.token
                )
                if not retry.again(status, retry_after_s(hint)):
                    break
                await asyncio.sleep(retry.wait)
            if status == 409:
                return
            if status != 200:
                self.stats.error(f"question HTTP {status}: {body[:160]!r}")
                return
            q = msgspec.json.decode(body)
            if q.get("answered"):
                return
            await asyncio.sleep(self.rng.uniform(*self.sc.answer_after_s))
            await self.answer(q["question_id"], q["index"])

    def close(self) -> None:
        self.sock.close()
        self.http.close()
