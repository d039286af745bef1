"""The clustered engines, inside ``python -m infra.cluster test`` (tests/test_cluster.py
starts it): a game end to end on a Redis Cluster (3 primaries, 1 replica each) and
three Kafka brokers (replication factor 3, min.insync.replicas 2), then one broker
and one Redis primary SIGKILLed mid-game (tests/chaos/nodeloss.py).

Skipped on the single-node stack; ``just chaos-cluster`` runs it with the full
sizes and writes reports/chaos-cluster.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.redis import is_cluster
from services.common.settings import get_settings
from tests.chaos import report
from tests.chaos.nodeloss import ALL
from tests.chaos.scenarios import Ctx, Result

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("QUIZ_CLUSTER_DIR"), reason="runs on the cluster (tests/test_cluster.py)"
    ),
]

_results: list[Result] = []
STACK_TEXT = "PostgreSQL, Redis, Kafka as local processes"
CLUSTER_TEXT = (
    "PostgreSQL as a local process; a Redis Cluster of 3 primaries with 1 replica each"
    " and three Kafka brokers (SCORE_CHANGE and TOP_10 with replication factor 3,"
    " min.insync.replicas 2), from `python -m infra.cluster test`"
)


@pytest.fixture(scope="module")
def ctx(stack_dir: Path) -> Iterator[Ctx]:
    c = Ctx.from_env(stack_dir)
    yield c
    out = os.environ.get("QUIZ_CHAOS_REPORT")
    if out and _results:
        text = report.render(_results, full=c.full).replace(STACK_TEXT, CLUSTER_TEXT)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(
            text.replace("(`just chaos`)", "on the cluster (`just chaos-cluster`)")
        )


def test_the_stack_runs_on_the_clustered_engines() -> None:
    s = get_settings()
    assert is_cluster(), s.redis_url
    assert len(s.kafka_bootstrap.split(",")) == 3 and s.kafka_replication == 3


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", list(ALL))
async def test_node_loss_loses_nothing(ctx: Ctx, scenario: str) -> None:
    result = await ALL[scenario](ctx)
    _results.append(result)
    v = result.verdict
    print(
        f"\n{result.name} ({result.seconds:.1f}s): sent {v.sent}, accepted {v.accepted},"
        f" stored {v.stored}, counted {v.counted}, lb events {v.leaderboard_events},"
        f" 5xx {v.server_errors}, lag p50 {v.p50_lag_s} max {v.max_lag_s},"
        f" clients correct after {v.events_correct_s}; {'; '.join(result.notes)}"
    )
    assert v.ok, f"{result.name}: {result.notes}\n  " + "\n  ".join(v.problems[:30])
    assert v.accepted > 0 and v.accepted == v.stored == v.counted
