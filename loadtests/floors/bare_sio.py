"""The socket.io floor: python-socketio with the stack's Redis manager, nothing else.

Any client may connect; ``join`` puts it in the room named in the payload. A
write-only manager in the bench process emits to that room, as the leaderboard
consumer does in the product.
"""

from __future__ import annotations

import os

import socketio

from loadtests.floors import FLOOR_CHANNEL
from realtime_sio import jsonmsg

CHANNEL = os.environ.get("QUIZ_FLOOR_SIO_CHANNEL", FLOOR_CHANNEL)

# The server options of realtime_sio.app that matter for cost (JSON module, pings).
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(
        os.environ["QUIZ_REDIS_URL"], channel=CHANNEL, json=jsonmsg
    ),
    json=jsonmsg,
    cors_allowed_origins=[],
    ping_interval=25,  # as the socket tier (realtime_sio/app.py)
    ping_timeout=20,
)


@sio.event
async def join(sid: str, data: dict) -> dict:
    await sio.enter_room(sid, f"session:{data['session_id']}")
    return {"ok": True}


app = socketio.ASGIApp(sio, socketio_path="socket.io")
