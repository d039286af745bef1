"""engine.io's pings and ping timeouts for every socket of a process, from one task.

Stock python-engineio keeps a socket alive with a task per ping (``_send_ping``:
a sleep of the ping interval, then the ``PING`` through the send queue and the socket's writer) and
watches them all with a service task that visits one socket every
``ping_timeout / sockets`` seconds, each visit an ``asyncio.wait_for`` with a task
of its own. With 1,000 idle sockets on a process that was 24 ms of CPU per second
with pings every 20 s (measured on ``./dev up``: 9.7 ms of it the service task), a
quarter of the socket tier's CPU in the bench's many-rooms scenario.

Here (the server is built with ``monitor_clients=False``, so engine.io starts no
service task):

- ``Liveness.adopt`` gives a socket a ``schedule_ping`` that puts it in one queue,
  in the order its pings fall due (the interval is the same for all). Every
  ``STEP_S`` one task sends the due pings: a websocket whose writer is idle gets
  the pre-framed ``PING`` written to its transport at once (``send_now``), any
  other socket gets it queued as stock engine.io does, so it stays in order with
  the socket's other packets. The ping leaves up to ``STEP_S`` late; a client
  waits ``pingInterval + pingTimeout`` (45 s) before it gives up.
- every ``SWEEP_S`` (at most a quarter of ``ping_timeout``) the same task does what
  the service task did, once for all sockets: a closed socket is forgotten, and one
  whose ping has gone unanswered for ``ping_timeout`` is closed (engine.io's own
  ``check_ping_timeout``), adopted or not (a socket is adopted when it connects to
  the namespace; before that, engine.io's first ping task serves it).

The ``PONG`` is read by engine.io's reader as before; the protocol is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from typing import Any

from engineio import packet as eio_packet

from realtime_sio.uvicorn_ws import text_frame

log = logging.getLogger("quizrt.sio.liveness")

STEP_S = 0.25
SWEEP_S = 5.0

PING = eio_packet.Packet(eio_packet.PING)
PING_FRAME = text_frame(PING.encode().encode())


def send_now(s: Any, frame: bytes, pkt: eio_packet.Packet) -> bool:
    """Send one engine.io packet to socket ``s``, after what is queued for it: its
    pre-made websocket ``frame`` written at once when the socket's writer is idle
    with nothing queued (``realtime_sio.fanout``), else ``pkt`` queued. True when
    written at once."""
    raw_write = s.__dict__.get("raw_write")
    if raw_write is not None and s.__dict__.get("writer_idle") and s.queue.empty():
        if raw_write(frame):
            return True
    s.queue.put_nowait(pkt)
    return False


class Liveness:
    """Pings and ping timeouts of one engine.io server's sockets."""

    def __init__(self, eio: Any):
        self.eio = eio
        self._due: deque[tuple[float, Any]] = deque()  # (monotonic due time, socket)
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self.pings = 0
        self.timeouts = 0

    def adopt(self, s: Any) -> None:
        """Socket ``s``'s later pings come from this task (see the module docstring)."""
        s.schedule_ping = functools.partial(self._schedule_ping, s)

    def _schedule_ping(self, s: Any) -> None:
        """engine.io's ``AsyncSocket.schedule_ping`` (called on each ``PONG``), without a
        task: only when the last ping was answered, the next one is queued."""
        if s.last_ping:
            s.last_ping = None
            self._due.append((time.monotonic() + self.eio.ping_interval, s))

    def start(self) -> None:
        """Run the task (on the running loop) unless it runs already."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        swept = time.monotonic()
        every = min(SWEEP_S, self.eio.ping_timeout / 4)
        while True:
            await asyncio.sleep(min(STEP_S, every))
            now = time.monotonic()
            try:
                self.send_due(now)
                if now - swept >= every:
                    swept = now
                    self.sweep()
            except Exception:  # keep pinging: one bad socket must not stop the rest
                log.exception("liveness step failed")

    def send_due(self, now: float) -> None:
        """Send every ping due by ``now`` (monotonic)."""
        due = self._due
        wall = time.time()
        while due and due[0][0] <= now:
            _, s = due.popleft()
            if s.closing or s.closed or s.last_ping is not None:
                continue
            s.last_ping = wall
            send_now(s, PING_FRAME, PING)
            self.pings += 1

    def sweep(self) -> None:
        """Forget closed sockets; close those whose ping went unanswered too long."""
        sockets = self.eio.sockets
        limit = time.time() - self.eio.ping_timeout
        for sid, s in list(sockets.items()):
            if s.closed:
                sockets.pop(sid, None)
            elif not s.closing and s.last_ping and s.last_ping < limit:
                self.timeouts += 1
                task = asyncio.get_running_loop().create_task(_time_out(s))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)


async def _time_out(s: Any) -> None:
    """engine.io's own check: it closes the socket as its service task would."""
    with contextlib.suppress(Exception):  # closed meanwhile: nothing left to do
        await s.check_ping_timeout()
