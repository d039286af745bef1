"""Per-process limits of the socket tier: open sockets, and events per socket per second."""

from __future__ import annotations

import time
from collections.abc import Callable


class ConnectionCap:
    """Counts this process's sockets; refuses new ones past ``limit``."""

    def __init__(self, limit: int):
        self.limit = limit
        self._sids: set[str] = set()

    def admit(self, sid: str) -> bool:
        if len(self._sids) >= self.limit:
            return False
        self._sids.add(sid)
        return True

    def release(self, sid: str) -> None:
        self._sids.discard(sid)

    def __len__(self) -> int:
        return len(self._sids)


class EventRateLimit:
    """A token bucket per socket: ``rate`` events per second, bursts up to ``rate``."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic):
        self.rate = float(max(rate, 1))
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # sid -> (tokens, last time)

    def allow(self, sid: str) -> bool:
        """True when the socket may send one more event now (and takes a token)."""
        now = self.clock()
        tokens, last = self._buckets.get(sid, (self.rate, now))
        tokens = min(self.rate, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[sid] = (tokens, now)
            return False
        self._buckets[sid] = (tokens - 1.0, now)
        return True

    def forget(self, sid: str) -> None:
        self._buckets.pop(sid, None)
