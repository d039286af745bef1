"""Prometheus metrics of one process: the latency budget of each hop of an answer.

Every process of the stack serves its own ``/metrics`` on 127.0.0.1 at
``settings.metrics_port`` (``infra/stack/`` gives each process a port; 0 = none).
nginx does not route it: it is for the operator and the bench, not for players.

One histogram, ``quizrt_hop_seconds{hop=...}``, holds every hop an answer passes:

| hop | measured by | from -> to |
|---|---|---|
| ``arrive_commit`` | quiz | request arrived -> its transaction committed |
| ``commit_produce`` | quiz (outbox relay) | committed -> handed to the Kafka producer |
| ``produce_ack`` | quiz (outbox relay) | handed to the producer -> Kafka acknowledged |
| ``ack_read`` | consumer | acknowledged (or produced) -> read by the consumer |
| ``read_emit`` | consumer | read -> the room event published |
| ``arrive_emit`` | consumer | arrived -> the room event published (the sum) |
| ``emit_deliver`` | socket.io | room event published -> queued on every local socket |

Processes add counters and gauges of their own with the same registry.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from services.common.settings import get_settings

log = logging.getLogger("quizrt.metrics")

# Seconds: 1 ms to 10 s, dense where the budget lives (10-200 ms).
BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip

HOP = Histogram(
    "quizrt_hop_seconds",
    "Time an answer spent in one hop of the pipeline",
    ["hop"],
    buckets=BUCKETS,
)

__all__ = ["BUCKETS", "HOP", "REGISTRY", "Counter", "Gauge", "Histogram", "observe_ms", "serve"]

_started = False
_lock = threading.Lock()


_hops: dict[str, Any] = {}  # hop -> its labelled histogram (labels() is slow per call)


def observe_ms(hop: str, start_ms: int, end_ms: int) -> None:
    """Record one hop from two wall-clock times in ms (skipped when either is unknown)."""
    if start_ms > 0 and end_ms >= start_ms:
        child = _hops.get(hop)
        if child is None:
            child = _hops[hop] = HOP.labels(hop)
        child.observe((end_ms - start_ms) / 1000)


def serve(port: int | None = None) -> int:
    """Serve ``/metrics`` of this process on 127.0.0.1 (once; 0 = disabled).

    Returns the port, or 0 when metrics are off or the port was taken (logged: the
    process works without its metrics).
    """
    global _started
    port = get_settings().metrics_port if port is None else port
    with _lock:
        if _started or port <= 0:
            return port if _started else 0
        try:
            start_http_server(port, addr="127.0.0.1")
        except OSError as e:
            log.warning("metrics: cannot listen on 127.0.0.1:%d (%s); no /metrics", port, e)
            return 0
        _started = True
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
        return port
