"""Room events of sessions: sending one, pacing the joins' `session_state`, and the
`question` event (the public form of a live question, never its answer).

Room events go out through the write-only socket.io Redis manager from whichever
process caused them; a Redis outage loses an event but never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from msgspec import Struct

from contracts import SessionStateChanged
from services.board.ranking import read_players
from services.common.redis import get_redis
from services.common.rooms import get_emitter

log = logging.getLogger("quizrt.quiz.announcements")


async def emit(event: str, payload: Struct, session_id: str) -> None:
    """Send a room event; a Redis outage loses the event but never fails the request."""
    try:
        await get_emitter().emit(event, payload, session_id)
    except Exception as e:
        log.warning("could not emit %s to session %s: %s", event, session_id, e)


class JoinAnnouncer:
    """Coalesces the `session_state` events of players joining, per session.

    Each join used to broadcast to the whole room, so N players joining cost N^2
    deliveries (a stadium of 1,000: a million) and delayed the `question` events
    behind them. The first join of a quiet session is announced at once; later ones
    within the interval become one trailing event with the player count read
    fresh from the board when it is sent. Each event carries the board version its
    count was read at, so a client can order the events of several processes. The
    interval grows with the room: at least ``interval_s``, and long enough that one
    process's announcements to a room of N cost at most ``deliveries_per_s`` (a
    stadium of 5,000 joining: one announcement per 2.5 s instead of two a second,
    which were 2.4 million deliveries in the bench's stadium-5000).
    """

    def __init__(self, interval_s: float = 0.5, deliveries_per_s: float = 2000.0):
        self.interval_s = interval_s
        self.deliveries_per_s = deliveries_per_s
        self._last: dict[str, float] = {}
        self._pending: dict[str, SessionStateChanged] = {}
        self._tasks: set[asyncio.Task] = set()

    async def announce(self, event: SessionStateChanged) -> None:
        sid = event.session_id
        if sid in self._pending:  # a trailing event is already scheduled
            self._pending[sid] = event
            return
        interval = max(self.interval_s, event.players / self.deliveries_per_s)
        wait = self._last.get(sid, 0.0) + interval - time.monotonic()
        if wait <= 0:
            self._last[sid] = time.monotonic()
            await emit("session_state", event, sid)
            return
        self._pending[sid] = event
        asyncio.get_running_loop().call_later(wait, self._start_flush, sid)

    def _start_flush(self, sid: str) -> None:
        task = asyncio.ensure_future(self._flush(sid))
        self._tasks.add(task)  # held until done, so it is not collected mid-flight
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, sid: str) -> None:
        event = self._pending.pop(sid)
        self._last[sid] = time.monotonic()
        if len(self._last) > 10_000:  # forget quiet sessions
            cutoff = time.monotonic() - 60
            self._last = {k: v for k, v in self._last.items() if v > cutoff}
        try:
            players, version = await read_players(get_redis(), sid)
            if players and version >= event.version:
                event = msgspec.structs.replace(event, players=players, version=version)
        except Exception:  # keep the count the last join saw
            pass
        await emit("session_state", event, sid)


join_announcer = JoinAnnouncer()
