"""msgspec as the JSON module of python-socketio (packets and the Redis manager)."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

# The event name a packet decodes to when its JSON is nested too deep to decode.
# python-socketio parses the ack id before the JSON, so the catch-all event handler
# still answers the sender with an ErrorAck instead of the packet being dropped.
TOO_DEEP = "\x00too deep"


def dumps(obj: Any, **_: Any) -> str:
    """Like ``json.dumps``; options such as ``separators`` are ignored (msgspec is compact)."""
    return _encoder.encode(obj).decode()


def loads(s: str | bytes, **_: Any) -> Any:
    """Like ``json.loads``; raises ValueError on malformed JSON, as the standard library does.

    JSON nested deeper than the interpreter's recursion limit decodes to the event
    ``[TOO_DEEP]`` (its args dropped), answered with an ErrorAck.
    """
    try:
        return _decoder.decode(s)
    except msgspec.DecodeError as e:
        raise ValueError(str(e)) from e
    except RecursionError:
        return [TOO_DEEP]
