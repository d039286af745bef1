"""Socket.io tier: python-socketio AsyncServer sharing rooms through Redis."""

import socketio

from services.common.settings import get_settings

s = get_settings()
sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(s.redis_url, channel=s.sio_channel),
    cors_allowed_origins=[],
)
app = socketio.ASGIApp(sio, socketio_path="socket.io")
