"""When the leaderboard consumer's Kafka client must be replaced.

aiokafka does not always come back from a broker that was killed and restarted: on
a loaded machine the consumer was seen alive, assigned and polling, yet fetching
nothing for minutes while SCORE_CHANGE grew (every later leaderboard stood still).
``FetchWatch`` tells such a wedge from a quiet topic. While the consumer fetches
nothing, its loop probes the end offsets of its partitions every few seconds (one
ListOffsets request, sent only when idle); records that arrived after a probe and
are still not fetched ``stall_s`` later, no partitions for ``unassigned_s``, or
Kafka not answering ``max_failures`` probes in a row mean: start a new client.
Pure logic on a clock, so tests can drive it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping


class FetchWatch:
    def __init__(
        self,
        *,
        probe_s: float = 5.0,
        stall_s: float = 15.0,
        unassigned_s: float = 45.0,
        max_failures: int = 12,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.probe_s = probe_s
        self.stall_s = stall_s
        self.unassigned_s = unassigned_s
        self.max_failures = max_failures
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """A new client: nothing is known about it yet."""
        now = self.clock()
        self.fetched_at = now
        self.probed_at = now
        self._ref: tuple[float, Mapping[Hashable, int]] | None = None
        self._unassigned_since: float | None = None
        self._failures = 0

    def fetched(self) -> None:
        """The loop got records (or paused on purpose): it is not wedged."""
        self.fetched_at = self.clock()

    def probe_due(self) -> bool:
        """Idle for a probe interval and not probed for one."""
        now = self.clock()
        return now - self.fetched_at >= self.probe_s and now - self.probed_at >= self.probe_s

    def probed(self, ends: Mapping[Hashable, int] | None, assigned: bool) -> str | None:
        """One probe's result (``ends``: end offsets of the assigned partitions, None
        when Kafka did not answer); returns why the client must be replaced, or None."""
        now = self.clock()
        self.probed_at = now
        if assigned:
            self._unassigned_since = None
        elif self._unassigned_since is None:
            self._unassigned_since = now
        elif now - self._unassigned_since >= self.unassigned_s:
            return f"no partitions assigned for {now - self._unassigned_since:.0f}s"
        if ends is None:
            self._failures += 1
            if self._failures >= self.max_failures:
                return f"Kafka did not answer {self._failures} probes in a row"
            return None
        self._failures = 0
        if self._ref is None or self.fetched_at > self._ref[0]:
            self._ref = (now, dict(ends))
            return None
        since, before = self._ref
        grew = any(end > before.get(tp, end) for tp, end in ends.items())
        if grew and now - since >= self.stall_s:
            return f"records arrived {now - since:.0f}s ago and none were fetched"
        return None
