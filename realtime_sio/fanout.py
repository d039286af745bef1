"""The lean room fan-out: a python-socketio client manager (``client_manager=``).

Stock ``AsyncPubSubManager.emit`` serves the local sockets first and tells the
other processes after, and ``AsyncManager.emit`` starts one asyncio task per
recipient (each checking the ping clock and logging before it queues). Here:

- an emit is published to the other processes *before* the local sockets are
  served, so every process starts at once;
- the event is encoded once into one engine.io packet (its encoding cached), and
  that packet is put with ``put_nowait`` on each local socket's send queue: no
  task, ping check or log call per recipient. Each socket's own writer (websocket)
  or its next poll (long-polling) sends it, in queue order, so a socket receives
  room events in the order they were emitted, interleaved correctly with acks
  and pings on the same queue. A socket that closed or is closing is skipped;
  ``realtime_sio.liveness`` pings every socket and times out those that stopped
  answering (``Liveness.adopt`` at the namespace connect).

Each socket's send loop (``poll``, engine.io's, shared by the websocket writer and
long-polling GETs) is replaced on that socket with ``bounded_poll``: the same loop
with a timeout that starts no task per wait, returning at most
``MAX_PACKETS_PER_POLL`` packets at a time (python-engineio's own client refuses a
long-polling payload of more than 16 packets, which a burst of room events queued
between two polls would otherwise make).

On uvicorn with ``realtime_sio.uvicorn_ws`` (the socket tier's default), a
websocket's scope also lends a raw frame writer (``quizrt.raw_frames``): the event
is then also encoded once into the final WebSocket text frame (server frames are
unmasked, so the bytes are the same for every recipient), and a websocket whose
send queue is empty and whose writer is idle (waiting on that queue, nothing picked
up and unsent) gets those bytes written to its transport at once, with no queue,
task wakeup, ASGI ``send`` or frame encode of its own. Any other socket (queue not
empty, writer busy or back-pressured, long-polling, granian) gets the packet
queued as above, so the order per socket stays the emit order either way.

Emits with callbacks or binary data take the stock path (none exist here).
Clients see standard socket.io.
"""

from __future__ import annotations

import asyncio
import functools
import time
import types
from typing import Any

import socketio
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import asgi as eio_asgi
from socketio import packet as sio_packet
from socketio.packet import Packet

from realtime_sio.liveness import Liveness, send_now
from realtime_sio.uvicorn_ws import EXTENSION as RAW_FRAMES
from realtime_sio.uvicorn_ws import text_frame
from services.common import metrics
from services.common.redis import is_cluster
from services.common.redis_cluster import ShardedRedisManager
from services.common.settings import get_settings

MAX_PACKETS_PER_POLL = 16  # python-engineio's Payload.max_decode_packets

DELIVERIES = metrics.Counter(
    "quizrt_sio_deliveries_total", "Room event packets queued on local sockets", ["event"]
)
RAW_DELIVERIES = metrics.Counter(
    "quizrt_sio_raw_frame_deliveries_total",
    "Room event deliveries written as a pre-encoded frame (of quizrt_sio_deliveries_total)",
    ["event"],
)


class RawFramesWebSocket(eio_asgi.WebSocket):  # type: ignore[misc]
    """engine.io's ASGI websocket, which also hands the server's raw frame writer
    (``quizrt.raw_frames`` in the scope's extensions, when there is one) to the
    engine.io socket it serves, as ``raw_write``."""

    async def __call__(self, environ: dict) -> Any:
        ext = environ["asgi.scope"].get("extensions") or {}
        raw = ext.get(RAW_FRAMES)
        sock = getattr(self.handler, "__self__", None)  # the bound _websocket_handler
        if raw is not None and sock is not None:
            sock.raw_write = raw["write"]
        return await super().__call__(environ)


class LeanManager(socketio.AsyncRedisManager):
    """Publish-first emits and a task-free local delivery, over any Redis manager.

    Used as the first base of a class that names the transport (``LeanRedisManager``
    on one Redis, ``LeanShardedManager`` on a Redis Cluster's sharded channel):
    only ``emit``, ``_handle_emit`` and the local delivery are changed here.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Sockets whose room events wait (sid -> [(room, packet)]) while a join is
        # being authorized: see ``hold``.
        self._held: dict[str, list[tuple[Any, eio_packet.Packet]]] = {}

    def set_server(self, server: Any) -> None:
        super().set_server(server)
        self.liveness = Liveness(server.eio)
        # engine.io picks its websocket wrapper from this table (a copy: it is the
        # ASGI driver module's own dict).
        server.eio._async = {**server.eio._async, "websocket": RawFramesWebSocket}

    def initialize(self) -> None:
        super().initialize()  # at the server's first connect, on its loop
        self.liveness.start()

    async def pre_connect(self, eio_sid: str, namespace: str) -> Any:
        s = self.server.eio.sockets.get(eio_sid)
        if s is not None:
            s.poll = types.MethodType(bounded_poll, s)
            self.liveness.adopt(s)
        return await super().pre_connect(eio_sid, namespace)

    def hold(self, sid: str) -> None:
        """Keep this socket's room events back (in order) until ``release``.

        A ``join`` enters the room before it reads the snapshot (so no event can
        fall between the two) but only knows after that read whether the caller may
        be there; meanwhile the room's events wait here instead of reaching it.
        """
        self._held.setdefault(sid, [])

    def release(self, sid: str, drop_room: Any = None) -> None:
        """Queue what was held for the socket, except the events of ``drop_room``."""
        held = self._held.pop(sid, None)
        if not held:
            return
        eio_sid = self.eio_sid_from_sid(sid, "/")
        s = self.server.eio.sockets.get(eio_sid) if eio_sid else None
        if s is None or s.closed or s.closing:
            return
        for room, pkt in held:
            if drop_room is None or room != drop_room:
                s.queue.put_nowait(pkt)

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        args = list(data) if isinstance(data, tuple) else [data]
        if callback is not None or kwargs.get("ignore_queue") or Packet.data_is_binary(args):
            await super().emit(
                event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                callback=callback, **kwargs,
            )  # fmt: skip
            return
        namespace = namespace or "/"
        await self._publish(
            {
                "method": "emit",
                "event": event,
                "data": args,
                "binary": False,
                "namespace": namespace,
                "room": room,
                "skip_sid": skip_sid,
                "callback": None,
                "host_id": self.host_id,
            }
        )
        self.deliver(event, args, namespace, room, skip_sid)

    async def _handle_emit(self, message: dict) -> None:
        """An emit published by another process (or the leaderboard consumer)."""
        if message.get("callback") or message.get("binary"):
            await super()._handle_emit(message)
            return
        args = message.get("data")
        if not isinstance(args, list):
            args = [args]
        self.deliver(
            message["event"],
            args,
            message.get("namespace") or "/",
            message.get("room"),
            message.get("skip_sid"),
        )
        _observe_emit_deliver(args)

    def deliver(
        self, event: str, args: list, namespace: str, room: Any, skip_sid: Any = None
    ) -> int:
        """Queue the event once-encoded on every local socket of ``room``; how many."""
        if namespace not in self.rooms:
            return 0
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        # Not binary (``emit`` and ``_handle_emit`` sent those the stock way): saying so
        # spares the packet a walk through the whole payload.
        pkt = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *args], binary=False
        )
        eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, pkt.encode())
        text = eio_pkt.encode()  # fills the cache every socket's writer reads
        frame = text_frame(text.encode())  # the final websocket frame
        sockets = self.server.eio.sockets
        held = self._held
        n = raw_n = 0
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            if held and sid in held:
                held[sid].append((room, eio_pkt))
                continue
            s = sockets.get(eio_sid)
            if s is None or s.closed or s.closing:
                continue
            n += 1
            if send_now(s, frame, eio_pkt):
                raw_n += 1
        if n:
            _counter(DELIVERIES, event).inc(n)
        if raw_n:
            _counter(RAW_DELIVERIES, event).inc(raw_n)
        return n


@functools.cache
def _counter(metric: Any, event: str) -> Any:
    """``metric.labels(event)``, looked up once per event name (labels() takes a lock)."""
    return metric.labels(event)


def _observe_emit_deliver(args: list) -> None:
    """``emit_deliver``: from the consumer's emit (the trace in the event) to queued here."""
    if not args or not isinstance(args[0], dict):
        return
    trace = args[0].get("trace")
    if isinstance(trace, dict):
        emitted = trace.get("emitted_ms")
        if isinstance(emitted, int) and emitted > 0:
            metrics.observe_ms("emit_deliver", emitted, time.time_ns() // 1_000_000)


async def bounded_poll(self: Any) -> list:
    """engine.io's ``AsyncSocket.poll`` without a task per wait (long-polling: timed with
    ``asyncio.timeout``; websocket: untimed, see below) and at most
    ``MAX_PACKETS_PER_POLL`` packets per call (the rest stays queued, in order)."""
    try:
        if self.upgraded:
            # The websocket writer: its reader times the socket out and queues None,
            # so no timer per wait (re-arming one per delivery cost a fifth of the
            # process in the stadium's profile). While it waits here on an empty
            # queue it has nothing unsent, so ``deliver`` may write a frame directly.
            self.writer_idle = True
            try:
                first = await self.queue.get()
            finally:
                self.writer_idle = False
        else:
            async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                first = await self.queue.get()
    except (TimeoutError, asyncio.CancelledError):
        raise eio_exceptions.QueueEmpty() from None
    self.queue.task_done()
    if first is None:
        return []
    packets = [first]
    while len(packets) < MAX_PACKETS_PER_POLL:
        try:
            pkt = self.queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        self.queue.task_done()
        if pkt is None:
            self.queue.put_nowait(None)
            break
        packets.append(pkt)
    return packets


class LeanRedisManager(LeanManager):
    """The lean fan-out on one Redis (or Sentinel): ``AsyncRedisManager``'s channel."""

    name = "lean-redis"


class LeanShardedManager(LeanManager, ShardedRedisManager):
    """The lean fan-out on a Redis Cluster: the sharded pub/sub channel."""

    name = "lean-redis-cluster"


def lean_manager(**kwargs: Any) -> LeanManager:
    """The socket.io tier's client manager on this stack's Redis and channel."""
    s = get_settings()
    cls = LeanShardedManager if is_cluster() else LeanRedisManager
    # RESP2 for this connection: under RESP3 (redis-py's default) every pub/sub message
    # is a push reply, whose handler formats the whole message for a debug log that is
    # off (str() of ~1 KB, a getLogger call): about a fifth of the tier's cost per message.
    return cls(s.redis_url, channel=s.sio_channel, redis_options={"protocol": 2}, **kwargs)
