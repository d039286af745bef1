"""Emitting socket.io room events from any process (quiz service, leaderboard consumer).

A write-only ``AsyncRedisManager`` publishes on the stack's socket.io channel; every
``realtime_sio`` process delivers to its own sockets in the room.
"""

from __future__ import annotations

import asyncio

import socketio
from msgspec import Struct

from contracts import to_payload
from services.common.redis import sio_manager


def room_name(session_id: str) -> str:
    """The socket.io room of one quiz session."""
    return f"session:{session_id}"


class RoomEmitter:
    def __init__(self) -> None:
        self._manager: socketio.AsyncRedisManager | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def emit(self, event: str, payload: Struct, session_id: str) -> None:
        """Send ``event`` with a contracts Struct to every socket in the session's room."""
        loop = asyncio.get_running_loop()
        if self._manager is None or self._loop is not loop:
            # The manager's Redis connection belongs to the loop that opened it. Used
            # from another loop (a process that runs several, as tests do), its publish
            # is written, the reply cannot be read, and the manager's retry publishes
            # the event a second time: each loop gets a manager of its own.
            self._manager, self._loop = sio_manager(write_only=True), loop
        await self._manager.emit(
            event, to_payload(payload), room=room_name(session_id), namespace="/"
        )


_emitter: RoomEmitter | None = None


def get_emitter() -> RoomEmitter:
    global _emitter
    if _emitter is None:
        _emitter = RoomEmitter()
    return _emitter
