"""The fault scenarios: each plays a real game, injects one fault, heals it, then
runs the three-way comparison (tests/chaos/truth.py).

``Ctx.full`` selects the `just chaos` sizes (30 s Kafka outage, more players);
otherwise the sizes fit ``./dev test`` (a few seconds each).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from infra.stack import read_layout
from tests.chaos import faults
from tests.chaos.game import Game, Plan
from tests.chaos.live import LiveSide
from tests.chaos.secrets import secrets_in_logs
from tests.chaos.truth import Verdict, compare, wait_until_correct
from tests.chaos.waiting import until


@dataclass
class Ctx:
    base_url: str
    stack_dir: Path
    database_url: str
    redis_url: str
    full: bool = False

    @classmethod
    def from_env(cls, stack_dir: Path) -> Ctx:
        return cls(
            base_url=os.environ["QUIZ_BASE_URL"],
            stack_dir=stack_dir,
            database_url=os.environ["QUIZ_DATABASE_URL"],
            redis_url=os.environ["QUIZ_REDIS_URL"],
            full=os.environ.get("QUIZ_CHAOS_FULL", "") not in ("", "0"),
        )


@dataclass
class Timeline:
    """Moments (time.monotonic()) the fault code marks; ``healed`` is required."""

    faulted: float = 0.0
    healed: float = 0.0
    notes: list[str] = field(default_factory=list)

    def heal(self, note: str) -> Timeline:
        """Mark the fault healed now, with a note on how it went."""
        self.healed = time.monotonic()
        self.notes.append(note)
        return self


@dataclass
class Result:
    name: str
    fault: str
    verdict: Verdict
    notes: list[str]
    seconds: float
    fault_s: float | None = None  # from the fault until it was healed
    accepted_during: int | None = None  # answers accepted meanwhile


FaultFn = Callable[[Ctx, Game, asyncio.Event, asyncio.Task], Awaitable[Timeline]]
"""fault(ctx, game, stop, play): injects and heals; set ``stop`` to end the answering."""


async def run_scenario(
    ctx: Ctx,
    name: str,
    fault_text: str,
    plan: Plan,
    fault: FaultFn,
    *,
    max_answers: int | None = None,
    converge_timeout: float = 60,
    with_live_session: bool = False,
) -> Result:
    """Play ``plan`` while ``fault`` runs; then wait for the boards and compare.

    ``with_live_session``: a live session runs beside it (tests/chaos/live.py) and
    must keep its state through the fault; it is compared the same way.
    """
    t0 = time.monotonic()
    game = Game(ctx.base_url, plan)
    live = LiveSide(ctx.base_url) if with_live_session else None
    try:
        await game.setup()
        if live:
            await live.before()
        stop = asyncio.Event()
        play = asyncio.create_task(game.play_self_paced(stop, max_answers=max_answers))
        try:
            timeline = await fault(ctx, game, stop, play)
        finally:
            stop.set()
        await asyncio.wait_for(play, 120)
        live_problems = await live.after() if live else []
        since = max(timeline.healed, game.last_accept_t)
        redis_s, events_s = await wait_until_correct(
            game, ctx.redis_url, since, timeout=converge_timeout
        )
        verdict = await compare(game, ctx.database_url, ctx.redis_url)
        verdict.redis_correct_s, verdict.events_correct_s = redis_s, events_s
        if events_s is None:
            verdict.problems.append(
                f"clients' leaderboard not correct within {converge_timeout:.0f}s"
            )
        verdict.problems += live_problems
        if live:
            await wait_until_correct(live.game, ctx.redis_url, time.monotonic(), 30)
            verdict.absorb(await compare(live.game, ctx.database_url, ctx.redis_url), "live")
            timeline.notes.append(
                "a live session beside it kept its open question, state and board"
                if not live_problems
                else "the live session beside it had problems"
            )
        # Faults make servers log errors: none may carry this game's tokens.
        tokens = [
            p.tokens["access_token"] for g in (game, live and live.game) if g for p in g.players
        ]
        verdict.problems += secrets_in_logs(ctx.stack_dir, tokens)
        dead = faults.dead_processes(ctx.stack_dir)
        if dead:
            verdict.problems.append(f"processes dead after healing: {dead}")
        await faults.wait_healthy(ctx.base_url)
        result = Result(name, fault_text, verdict, timeline.notes, time.monotonic() - t0)
        if 0 < timeline.faulted < timeline.healed:
            result.fault_s = timeline.healed - timeline.faulted
            result.accepted_during = sum(
                1
                for p in game.players
                for t in p.accepted_at.values()
                if timeline.faulted <= t <= timeline.healed
            )
        return result
    finally:
        await game.close()
        if live:
            await live.game.close()


# --------------------------------------------------------------------------- 1


async def consumer_sigkill(ctx: Ctx) -> Result:
    """The leaderboard consumer is SIGKILLed in the middle of a burst, then restarted."""
    players, questions = (20, 40) if ctx.full else (8, 25)
    plan = Plan(players=players, questions=questions, think_s=(0.0, 0.05))
    total = players * questions

    async def fault(ctx: Ctx, game: Game, stop: asyncio.Event, play: asyncio.Task) -> Timeline:
        tl = Timeline()
        await until(lambda: game.accepted_count() >= total * 0.3, 30)
        faults.sigkill(ctx.stack_dir, "consumer-1")
        tl.faulted = time.monotonic()
        tl.notes.append(f"killed after {game.accepted_count()} of {total} answers accepted")
        await asyncio.sleep(2 if not ctx.full else 5)
        tl.notes.append(f"{game.accepted_count()} accepted while the consumer was dead")
        took = await faults.restart(ctx.stack_dir, "consumer-1")
        tl.heal(f"restart took {took:.1f}s")
        await asyncio.wait_for(asyncio.shield(play), 240)  # the burst runs to its end
        return tl

    return await run_scenario(
        ctx,
        "consumer SIGKILL mid-burst",
        "SIGKILL consumer-1 at 30 % of a burst, restart it",
        plan,
        fault,
        max_answers=questions,
    )


# --------------------------------------------------------------------------- 2


async def kafka_outage(ctx: Ctx) -> Result:
    """Kafka is stopped while players keep answering, then started again."""
    outage = 30.0 if ctx.full else 8.0
    plan = Plan(
        players=12 if ctx.full else 6,
        questions=100,
        think_s=(0.3, 0.7) if ctx.full else (0.2, 0.5),
    )

    async def fault(ctx: Ctx, game: Game, stop: asyncio.Event, play: asyncio.Task) -> Timeline:
        tl = Timeline()
        await asyncio.sleep(2)
        before = game.accepted_count()
        if ctx.full:
            took = await faults.stop(ctx.stack_dir, "kafka")
            how = f"stopped (SIGTERM, {took:.1f}s)"
        else:
            # ./dev test: a crash costs no shutdown time (the broker recovers on start).
            faults.sigkill(ctx.stack_dir, "kafka")
            how = "SIGKILLed"
        tl.faulted = time.monotonic()
        tl.notes.append(f"kafka {how} after {before} answers")
        await asyncio.sleep(outage)
        during = game.accepted_count() - before
        took = await faults.restart(ctx.stack_dir, "kafka")
        tl.heal(f"{during} answers accepted during the {outage:.0f}s outage (+{took:.1f}s restart)")
        await asyncio.sleep(2)
        return tl

    return await run_scenario(
        ctx,
        f"Kafka stopped {outage:.0f}s",
        f"{'stop' if ctx.full else 'SIGKILL'} kafka, {outage:.0f}s outage while players"
        " answer, then start it",
        plan,
        fault,
        converge_timeout=90,
    )


# --------------------------------------------------------------------------- 3


async def redis_restart(ctx: Ctx) -> Result:
    """Redis is restarted during a game (the test stack's Redis keeps no data)."""
    plan = Plan(players=12 if ctx.full else 6, questions=80, think_s=(0.1, 0.3))

    async def fault(ctx: Ctx, game: Game, stop: asyncio.Event, play: asyncio.Task) -> Timeline:
        tl = Timeline()
        await asyncio.sleep(2)
        before = game.accepted_count()
        tl.faulted = time.monotonic()
        took = await faults.restart(ctx.stack_dir, "redis")
        tl.heal(f"redis restarted (empty) in {took:.1f}s after {before} answers")
        await asyncio.sleep(5 if ctx.full else 3)
        return tl

    return await run_scenario(
        ctx,
        "Redis restarted",
        "restart redis (all data lost) mid-game",
        plan,
        fault,
        with_live_session=True,
    )


async def redis_flush(ctx: Ctx) -> Result:
    """Redis is flushed (FLUSHALL) during a game."""
    plan = Plan(players=12 if ctx.full else 6, questions=80, think_s=(0.1, 0.3))

    async def fault(ctx: Ctx, game: Game, stop: asyncio.Event, play: asyncio.Task) -> Timeline:
        tl = Timeline()
        await asyncio.sleep(2)
        before = game.accepted_count()
        await faults.flushall(ctx.redis_url)
        tl.faulted = tl.healed = time.monotonic()
        tl.notes.append(f"FLUSHALL after {before} answers")
        await asyncio.sleep(5 if ctx.full else 3)
        return tl

    return await run_scenario(
        ctx, "Redis flushed", "FLUSHALL mid-game", plan, fault, with_live_session=True
    )


# --------------------------------------------------------------------------- 4


async def quiz_and_sio_kill(ctx: Ctx) -> Result:
    """quiz-1 and sio-1 are SIGKILLed while clients are connected and answering."""
    # Both transports: websockets spread over sio-1/sio-2 (least_conn), long-polling
    # is hashed on ?sticky= and must move to the survivor.
    plan = Plan(
        players=16 if ctx.full else 8,
        questions=80,
        think_s=(0.1, 0.3),
        transports=("websocket", "websocket", "polling"),
    )

    async def fault(ctx: Ctx, game: Game, stop: asyncio.Event, play: asyncio.Task) -> Timeline:
        tl = Timeline()
        await asyncio.sleep(2)
        before = game.accepted_count()
        faults.sigkill(ctx.stack_dir, "quiz-1", "sio-1")
        tl.faulted = time.monotonic()
        await asyncio.sleep(8 if ctx.full else 4)
        dropped = sum(1 for p in game.players if p.stats.disconnects)
        tl.notes.append(
            f"killed after {before} answers; {game.accepted_count() - before} accepted while"
            f" down; {dropped} of {len(game.players)} sockets dropped"
        )
        if not dropped:
            tl.notes.append("no socket was on sio-1: the socket half of the fault missed")
        took = await faults.restart(ctx.stack_dir, "quiz-1", "sio-1")
        tl.heal(f"restart of both took {took:.1f}s")
        await asyncio.sleep(1)
        return tl

    return await run_scenario(
        ctx,
        "quiz + socket.io process killed",
        "SIGKILL quiz-1 and sio-1 with clients connected; restart later",
        plan,
        fault,
    )


# --------------------------------------------------------------------------- 5


async def duplicate_answers(ctx: Ctx) -> Result:
    """Every answer is sent twice at once; every third player sends it 10 times at once
    (repeats with other choices too). Every answer must count once."""
    plan = Plan(
        players=15 if ctx.full else 9,
        questions=20 if ctx.full else 10,
        think_s=(0.0, 0.05),
        copies=2,
        heavy_copies=10,
        heavy_every=3,
        repeat_with_other_choice=True,
    )

    async def fault(ctx: Ctx, game: Game, stop: asyncio.Event, play: asyncio.Task) -> Timeline:
        tl = Timeline()
        await asyncio.wait_for(asyncio.shield(play), 240)
        # Later, once more: a repeat long after the first reply gets exactly that reply.
        late_mismatch = 0
        for p in game.players:
            for qid, first in list(p.accepted.items())[:2]:
                r = await p.request(
                    "POST",
                    f"/api/quiz/sessions/{game.session_id}/answers",
                    json={"question_id": qid, "choice": 3},
                )
                p.stats.posts += 1
                if r is None or r.status_code != 200 or r.json() != first:
                    late_mismatch += 1
                    p.reply_mismatches.append(
                        f"late repeat of {qid}: {r and r.status_code} {r and r.text}"
                    )
        return tl.heal(f"late repeats with another choice: {late_mismatch} mismatches")

    return await run_scenario(
        ctx,
        "duplicate submissions",
        "each answer sent 2x at once, every 3rd player 10x at once (other choices too)",
        plan,
        fault,
        max_answers=plan.questions,
    )


# --------------------------------------------------------------------------- 6


async def _postgres_durable(ctx: Ctx, durable: bool) -> str:
    """Restart the stack's PostgreSQL (fast shutdown) with fsync and synchronous commit
    on (``durable``, as ``./dev up`` and the bench run it) or with the test stack's
    settings; returns what it now runs with."""
    # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for the pooled clients).
    os.killpg(faults.processes(ctx.stack_dir)["postgres"], signal.SIGINT)
    port = read_layout(ctx.stack_dir).pg_port

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    await until(lambda: not listening(), 30)
    if durable:
        os.environ["QUIZ_PG_DURABLE"] = "1"
    try:
        await faults.restart(ctx.stack_dir, "postgres")
    finally:
        os.environ.pop("QUIZ_PG_DURABLE", None)
    conn = await asyncpg.connect(ctx.database_url)
    try:
        names = ("fsync", "synchronous_commit", "full_page_writes")
        return " ".join([f"{n}={await conn.fetchval(f'SHOW {n}')}" for n in names])
    finally:
        await conn.close()


async def postgres_sigkill(ctx: Ctx) -> Result:
    """PostgreSQL is SIGKILLed in the middle of a burst of answers on a durable
    PostgreSQL, then restarted: every answer a client saw accepted is stored, once."""
    players, questions = (20, 40) if ctx.full else (8, 25)
    plan = Plan(players=players, questions=questions, think_s=(0.0, 0.05))
    total = players * questions
    settings = await _postgres_durable(ctx, durable=True)

    async def fault(ctx: Ctx, game: Game, stop: asyncio.Event, play: asyncio.Task) -> Timeline:
        tl = Timeline()
        tl.notes.append(f"postgres with {settings}")
        await until(lambda: game.accepted_count() >= total * 0.3, 60)
        faults.sigkill(ctx.stack_dir, "postgres")
        tl.faulted = time.monotonic()
        before = game.accepted_count()
        tl.notes.append(f"killed after {before} of {total} answers accepted")
        await asyncio.sleep(5 if ctx.full else 2)
        took = await faults.restart(ctx.stack_dir, "postgres")
        tl.heal(f"restart (crash recovery) took {took:.1f}s")
        await asyncio.wait_for(asyncio.shield(play), 240)  # the burst runs to its end
        return tl

    try:
        result = await run_scenario(
            ctx,
            "PostgreSQL SIGKILL mid-burst (durable)",
            "SIGKILL postgres (fsync, synchronous commit on) at 30 % of a burst, restart it",
            plan,
            fault,
            max_answers=questions,
        )
    finally:
        await _postgres_durable(ctx, durable=False)
    if "synchronous_commit=on" not in settings or "fsync=on" not in settings:
        result.verdict.problems.append(f"postgres was not durable: {settings}")
    return result


ALL = {
    "consumer_sigkill": consumer_sigkill,
    "kafka_outage": kafka_outage,
    "redis_restart": redis_restart,
    "redis_flush": redis_flush,
    "quiz_and_sio_kill": quiz_and_sio_kill,
    "duplicate_answers": duplicate_answers,
    "postgres_sigkill": postgres_sigkill,
}
