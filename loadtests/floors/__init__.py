"""Floors: the same frameworks with no product logic, measured in the same run.

``bare_http``: Litestar + msgspec answering the answer route with a fixed body.
``bare_sio``: python-socketio with the same Redis manager, rooms and no auth.
"""

FLOOR_CHANNEL = "bench-floor-socketio"
"""The Redis channel of the floor's socket.io servers (apart from the stack's)."""
