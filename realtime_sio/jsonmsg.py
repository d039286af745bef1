"""msgspec as the JSON module of python-socketio (packets and the Redis manager)."""

from __future__ import annotations

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def dumps(obj: Any, **_: Any) -> str:
    """Like ``json.dumps``; options such as ``separators`` are ignored (msgspec is compact)."""
    return _encoder.encode(obj).decode()


def loads(s: str | bytes, **_: Any) -> Any:
    """Like ``json.loads``; raises ValueError on malformed JSON, as the standard library does."""
    try:
        return _decoder.decode(s)
    except msgspec.DecodeError as e:
        raise ValueError(str(e)) from e
