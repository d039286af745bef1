"""``./dev test`` on the clustered engines: starts ``python -m infra.cluster test``
(a Redis Cluster and three Kafka brokers on free ports, and a second isolated stack
with its own PostgreSQL, services and nginx on them) and runs tests/test_on_cluster.py
there: a game end to end, one Kafka broker and one Redis primary SIGKILLed.

It runs beside the rest of the suite (tests/support/early.py), at the lowest CPU
priority (``nice -n 19``, which every process it starts inherits): the suite leaves
about half of the two cores idle, and the cluster run uses that idle time without
taking CPU from the suite's timing-bound tests. (At the same priority, a second stack
beside the suite made those tests flaky on two cores.)
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.support.early import EarlyJob

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("QUIZ_CLUSTER_DIR")), reason="already inside the cluster run"
    ),
]

CLUSTER_RUN = EarlyJob(
    "cluster",
    [
        *("nice", "-n", "19"),
        *(sys.executable, "-m", "infra.cluster", "test", "tests/test_on_cluster.py", "-v", "-s"),
    ],
    timeout=520,
)


@pytest.mark.timeout(540)
@pytest.mark.early(CLUSTER_RUN)
def test_games_on_redis_cluster_and_three_brokers_survive_losing_a_node() -> None:
    r = CLUSTER_RUN.result()
    out = r.stdout[-12000:] + r.stderr[-4000:]
    print(out)
    assert r.returncode == 0, out
    summary = [x for x in r.stdout.splitlines() if x.startswith("=") and " passed" in x]
    assert summary and "skipped" not in summary[-1], out
    print(f"cluster run took {time.monotonic() - CLUSTER_RUN.started:.0f}s")
