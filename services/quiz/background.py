"""Background work of each quiz process, started and stopped with the app.

- the outbox relay (SCORE_CHANGE to Kafka);
- closing live questions whose deadline passed (`question_closed`, once across
  processes);
- rewriting the session hashes when Redis lost its data.

Boards are rebuilt by the leaderboard consumer (through ``services.board.rebuild``):
it runs the dirty-board and lost-Redis rebuilds and publishes what it rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.common import db
from services.common.redis import get_redis
from services.quiz.outbox import OutboxRelay
from services.quiz.restore import restore_session_hashes
from services.quiz.sessions import close_due_questions

log = logging.getLogger("quizrt.quiz.background")

CLOSE_EVERY_S = 0.2
RESTORE_EVERY_S = 1.0

relay = OutboxRelay()
_tasks: list[asyncio.Task] = []


async def _every(interval_s: float, name: str, work: Callable[[], Awaitable[object]]) -> None:
    """Run ``work`` every ``interval_s``; an error is logged (once per streak) and retried."""
    failing = False
    while True:
        try:
            await work()
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if not failing:
                log.warning("%s failed (retrying every %.1fs): %s", name, interval_s, e)
            failing = True
        await asyncio.sleep(interval_s)


async def _close_due() -> None:
    async with db.connection() as conn:
        await close_due_questions(conn, get_redis())


async def _restore() -> None:
    async with db.connection() as conn:
        await restore_session_hashes(conn, get_redis())


async def start() -> None:
    """Lifespan start-up: the relay and the periodic tasks."""
    await relay.start()
    _tasks.append(asyncio.create_task(_every(CLOSE_EVERY_S, "closing due questions", _close_due)))
    _tasks.append(
        asyncio.create_task(_every(RESTORE_EVERY_S, "restoring session hashes", _restore))
    )


async def stop() -> None:
    """Lifespan shutdown: stop the periodic tasks, then the relay (it finishes its batch)."""
    for t in _tasks:
        t.cancel()
    for t in _tasks:
        try:
            await t
        except (asyncio.CancelledError, Exception):
            pass
    _tasks.clear()
    await relay.stop()
