"""Emitting socket.io room events from any process (quiz service, leaderboard consumer).

A write-only ``AsyncRedisManager`` publishes on the stack's socket.io channel; every
``realtime_sio`` process delivers to its own sockets in the room.
"""

from __future__ import annotations

from msgspec import Struct

from contracts import to_payload
from services.common.redis import sio_manager


def room_name(session_id: str) -> str:
    """The socket.io room of one quiz session."""
    return f"session:{session_id}"


class RoomEmitter:
    def __init__(self) -> None:
        self._manager = sio_manager(write_only=True)

    async def emit(self, event: str, payload: Struct, session_id: str) -> None:
        """Send ``event`` with a contracts Struct to every socket in the session's room."""
        await self._manager.emit(
            event, to_payload(payload), room=room_name(session_id), namespace="/"
        )


_emitter: RoomEmitter | None = None


def get_emitter() -> RoomEmitter:
    global _emitter
    if _emitter is None:
        _emitter = RoomEmitter()
    return _emitter
