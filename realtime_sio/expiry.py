"""Sockets stop being authorized when their access token expires.

A token is verified once, at ``connect``; a socket could otherwise stay in its
rooms, and ``join`` new ones, long after the token's ``exp``. ``watch`` arms a
timer per socket for its token's expiry: when it fires, the socket gets
``token_expired`` and is disconnected. The web client then refreshes its token,
reconnects and joins its room again (the join ack redraws its place).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from contracts import TokenExpired, to_payload

log = logging.getLogger("quizrt.sio.expiry")

_timers: dict[str, asyncio.TimerHandle] = {}
_tasks: set[asyncio.Task[None]] = set()


def watch(sio: Any, sid: str, exp: float) -> None:
    """Tell and disconnect socket ``sid`` when ``exp`` (Unix seconds) passes."""
    forget(sid)
    delay = max(0.0, exp - time.time())
    loop = asyncio.get_running_loop()
    _timers[sid] = loop.call_later(delay, _fire, sio, sid, int(exp))


def forget(sid: str) -> None:
    """The socket is gone: drop its timer."""
    timer = _timers.pop(sid, None)
    if timer is not None:
        timer.cancel()


def watched() -> int:
    """How many sockets have a timer (tests, metrics)."""
    return len(_timers)


def _fire(sio: Any, sid: str, exp: int) -> None:
    _timers.pop(sid, None)
    task = asyncio.get_running_loop().create_task(_expire(sio, sid, exp))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _expire(sio: Any, sid: str, exp: int) -> None:
    try:
        await sio.emit("token_expired", to_payload(TokenExpired(exp=exp)), to=sid)
        await sio.disconnect(sid)
    except Exception:  # the socket went away meanwhile: nothing to do
        log.debug("expiring socket %s failed", sid, exc_info=True)
