"""Polling for a condition that other tasks (socket.io handlers, players) make true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(pred: Callable[[], bool], timeout: float, interval: float = 0.03) -> bool:
    """Wait until ``pred()`` is true or ``timeout`` passed; returns ``pred()``.

    Polling, not an Event: the conditions are counters that many handlers update.
    """
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True
