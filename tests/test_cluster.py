"""``./dev test`` on the clustered engines: starts ``python -m infra.cluster test``
(a Redis Cluster and three Kafka brokers on free ports, and a second isolated stack
with its own PostgreSQL, services and nginx on them) and runs tests/test_on_cluster.py
there: a game end to end, one Kafka broker and one Redis primary SIGKILLed. It runs in
its place in the suite, not beside it (tests/support/early.py): a second stack and a
cluster beside the suite made its timing-bound tests flaky on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from infra.stack import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("QUIZ_CLUSTER_DIR")), reason="already inside the cluster run"
    ),
]


@pytest.mark.timeout(540)
def test_games_on_redis_cluster_and_three_brokers_survive_losing_a_node() -> None:
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "infra.cluster", "test", "tests/test_on_cluster.py", "-v", "-s"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=520,
    )
    out = r.stdout[-12000:] + r.stderr[-4000:]
    print(out)
    assert r.returncode == 0, out
    summary = [x for x in r.stdout.splitlines() if x.startswith("=") and " passed" in x]
    assert summary and "skipped" not in summary[-1], out
    print(f"cluster run took {time.monotonic() - t0:.0f}s")
