"""uvicorn's sans-io websocket protocol, lending the app a raw frame writer.

    uvicorn --ws realtime_sio.uvicorn_ws:RawFramesProtocol ... realtime_sio.app:app

Server-to-client WebSocket frames are not masked, so one text frame's bytes are
the same for every recipient: the lean fan-out (``fanout.py``) encodes a room
event once into the final frame and writes those bytes to each websocket's
transport, instead of a send-queue hop, a writer task wakeup, an ASGI ``send``
and a frame encode per recipient.

The capability reaches the app through the ASGI scope:
``scope["extensions"]["quizrt.raw_frames"] = {"write": write}`` where
``write(frame: bytes) -> bool`` writes one complete, pre-framed server frame, or
returns ``False`` (and writes nothing) when it may not: the handshake is not done,
the connection is closing or closed, or the transport is under back-pressure (uvicorn paused
writing, or more than ``MAX_BUFFERED`` bytes wait in its buffer). The caller then
sends through the ordinary path, which waits for the transport like uvicorn does.
A connection that negotiated permessage-deflate gets no writer (its frames are
per connection). Everything else is uvicorn's ``WebSocketsSansIOProtocol``.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

EXTENSION = "quizrt.raw_frames"
# Above this many bytes waiting in the transport's buffer the raw path steps aside:
# the ordinary path then waits on uvicorn's ``writable`` (its high-water mark).
MAX_BUFFERED = 64 * 1024


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 5.2) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


class RawFramesProtocol(WebSocketsSansIOProtocol):
    """``WebSocketsSansIOProtocol`` with ``quizrt.raw_frames`` in the scope's extensions."""

    def handle_connect(self, event):  # type: ignore[no-untyped-def]
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        # The app's task starts on the next loop turn, so it sees the extension. With
        # an extension negotiated (permessage-deflate), frames are per connection.
        if scope is not None and not self.close_sent and not self.conn.extensions:
            scope["extensions"][EXTENSION] = {"write": self.write_frame}

    def write_frame(self, frame: bytes) -> bool:
        """Write one pre-framed server frame now, or return False (nothing written).

        A close received or sent closes the transport or sets ``close_sent`` (see
        uvicorn's handlers), so these flags cover the protocol's state."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or not self.writable.is_set()
        ):
            return False
        transport = self.transport
        if transport.is_closing() or transport.get_write_buffer_size() > MAX_BUFFERED:
            return False
        transport.write(frame)
        return True
