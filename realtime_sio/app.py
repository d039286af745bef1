"""Socket.io tier: python-socketio AsyncServer sharing rooms through Redis.

    uvicorn --ws realtime_sio.uvicorn_ws:RawFramesProtocol ... realtime_sio.app:app
    (or granian --interface asgi --ws ... realtime_sio.app:app; see infra/stack.py)

Authorization happens once, at ``connect`` (the access token from ``auth.token``;
never from the URL, which nginx refuses); the caller is kept in the
socket's session. ``join`` lets a session's players and host into the room
``session:{id}`` and acks with the state and the current top 10, so a client that
(re)connects is up to date at once. Room events come from other processes
(quiz service, leaderboard consumer) through the Redis manager. Payloads are the
Structs of ``contracts``; the JSON codec is msgspec.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import socketio

from contracts import ErrorAck, JoinAck, JoinRoom, LeaveRoom, RoomLeaderboard, to_payload
from realtime_sio import expiry, jsonmsg
from realtime_sio.fanout import lean_manager
from realtime_sio.limits import ConnectionCap, EventRateLimit
from services.board import reads
from services.board.access import NotAParticipant, UnknownSession, role_from_postgres
from services.board.rebuild import parse_session_id
from services.board.view import JoinReads, session_view
from services.common import db, metrics
from services.common.auth import AuthError, Caller, verifier
from services.common.logs import setup_logging
from services.common.redis import close_redis, get_redis
from services.common.rooms import room_name
from services.common.settings import get_settings

setup_logging()
log = logging.getLogger("quizrt.sio")
settings = get_settings()

manager = lean_manager(json=jsonmsg)
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=manager,
    json=jsonmsg,
    # Token auth, no cookies: nothing for a cross-origin page to abuse, so no Origin check.
    cors_allowed_origins=[],
    # engine.io's defaults (25 s, 20 s): a ping costs the tier about 0.2 ms of CPU per
    # socket (realtime_sio/liveness.py), so the interval is not shortened.
    ping_interval=25,
    ping_timeout=20,
    max_http_buffer_size=64 * 1024,
    # Pings and ping timeouts come from one task per process (realtime_sio.liveness).
    monitor_clients=False,
)
connections = ConnectionCap(settings.sio_max_connections)
join_reads = JoinReads()
rate_limit = EventRateLimit(settings.sio_events_per_second)

Handler = Callable[..., Awaitable[dict[str, Any]]]


# Temporary refusals say when to try again (with jitter, so a storm spreads out).
RETRY_AFTER_MS = 500


def _error(message: str, retry_after_ms: int | None = None) -> dict[str, Any]:
    return to_payload(ErrorAck(ok=False, error=message, retry_after_ms=retry_after_ms))


def _retry_later(message: str, base_ms: int = RETRY_AFTER_MS) -> dict[str, Any]:
    return _error(message, base_ms + random.randrange(base_ms))


def client_event(handler: Handler) -> Handler:
    """Wrap a client event: rate limited per socket, never raises (errors become ErrorAck)."""

    @functools.wraps(handler)
    async def wrapped(sid: str, *args: Any) -> dict[str, Any]:
        if not rate_limit.allow(sid):
            return _retry_later("rate limited", int(1000 / rate_limit.rate))
        try:
            return await handler(sid, *args)
        except Exception:
            log.exception("%s failed", handler.__name__)
            return _retry_later("temporarily unavailable, retry")

    return wrapped


def _token(auth: Any, environ: dict) -> str | None:
    # Only from the auth payload: a token in the URL would end up in access and error
    # logs along the way (nginx refuses such URLs with 400).
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return auth["token"]
    return None


@sio.event
async def connect(sid: str, environ: dict, auth: Any = None) -> None:
    token = _token(auth, environ)
    if not token:
        raise socketio.exceptions.ConnectionRefusedError("missing token")
    try:
        caller, exp = await verifier.verify_until(token)
    except AuthError as e:
        raise socketio.exceptions.ConnectionRefusedError(str(e)) from e
    if not connections.admit(sid):
        raise socketio.exceptions.ConnectionRefusedError("server full, retry later")
    await sio.save_session(sid, {"caller": caller})
    expiry.watch(sio, sid, exp)  # told and disconnected when the token expires


@sio.event
async def disconnect(sid: str, reason: Any = None) -> None:
    manager.release(sid)
    connections.release(sid)
    rate_limit.forget(sid)
    expiry.forget(sid)


def _payload(struct: type[msgspec.Struct], args: tuple) -> Any:
    """The event's first argument as ``struct``; raises ValueError when malformed."""
    if len(args) != 1:
        raise ValueError("expected one payload object")
    try:
        return msgspec.convert(args[0], struct)
    except msgspec.ValidationError as e:
        raise ValueError(str(e)) from e


@sio.on("join")
@client_event
async def join(sid: str, *args: Any) -> dict[str, Any]:
    """``join {session_id}``: players and the host enter the room; ack with the snapshot."""
    try:
        msg: JoinRoom = _payload(JoinRoom, args)
    except ValueError as e:
        return _error(f"invalid payload: {e}")
    if parse_session_id(msg.session_id) is None:
        return _error("unknown session")
    caller: Caller = (await sio.get_session(sid))["caller"]
    redis = get_redis()
    room = room_name(msg.session_id)
    # Enter before reading, so no change falls between the snapshot and the room's
    # events (an older event arriving after the ack is dropped by its version); the
    # room's events wait for the socket until the read says it may be there.
    already = room in sio.rooms(sid)
    manager.hold(sid)
    admitted = False
    try:
        await sio.enter_room(sid, room)
        got = await join_reads.read(redis, msg.session_id, caller.user_id)  # one round trip
        role = got.role or await role_from_postgres(msg.session_id, caller.user_id)
        snap = got.snapshot or await reads.top(redis, msg.session_id)  # rebuilds a lost board
        view = got.view or await session_view(redis, msg.session_id)
        if view is None:
            raise UnknownSession(msg.session_id)
        admitted = True
    except UnknownSession:
        return _error("unknown session")
    except NotAParticipant:
        return _error("not a participant of this session: join it first")
    finally:
        if not admitted and not already:
            await sio.leave_room(sid, room)
        manager.release(sid, drop_room=None if admitted or already else room)
    return to_payload(
        JoinAck(
            ok=True,
            state=view.state,
            mode=view.mode,
            role=role,
            question=view.question,
            leaderboard=RoomLeaderboard(**msgspec.structs.asdict(snap)),
        )
    )


@sio.on("leave")
@client_event
async def leave(sid: str, *args: Any) -> dict[str, Any]:
    """``leave {session_id}``: stop receiving the session's room events."""
    try:
        msg: LeaveRoom = _payload(LeaveRoom, args)
    except ValueError as e:
        return _error(f"invalid payload: {e}")
    await sio.leave_room(sid, room_name(msg.session_id))
    return {"ok": True}


@sio.on("*")
async def unknown_event(event: str, sid: str, *args: Any) -> dict[str, Any]:
    if not rate_limit.allow(sid):
        return _retry_later("rate limited", int(1000 / rate_limit.rate))
    if event == jsonmsg.TOO_DEEP:
        return _error("invalid payload: nested too deep")
    return _error(f"unknown event {event!r}")


async def _startup() -> None:
    metrics.serve()
    await db.open_pool()


async def _shutdown() -> None:
    await manager.liveness.stop()
    await db.close_pool()
    await close_redis()


app = socketio.ASGIApp(sio, socketio_path="socket.io", on_startup=_startup, on_shutdown=_shutdown)
