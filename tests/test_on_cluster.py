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
from tests.chaos.nodeloss import ALL
from tests.chaos.report import Runs, explain
from tests.chaos.scenarios import Ctx

pytestmark = [
    pytest.mark.stack,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("QUIZ_CLUSTER_DIR"), reason="runs on the cluster (tests/test_cluster.py)"
    ),
]

STACK_TEXT = "PostgreSQL, Redis, Kafka as local processes"
CLUSTER_TEXT = (
    "PostgreSQL as a local process; a Redis Cluster of 3 primaries with 1 replica each"
    " and three Kafka brokers (SCORE_CHANGE and TOP_10 with replication factor 3,"
    " min.insync.replicas 2), from `python -m infra.cluster test`"
)


def _on_the_cluster(text: str) -> str:
    text = text.replace(STACK_TEXT, CLUSTER_TEXT)
    return text.replace("(`just chaos`)", "on the cluster (`just chaos-cluster`)")


RUNS = Runs(ALL, edit=_on_the_cluster)


@pytest.fixture(scope="module")
def ctx(stack_dir: Path) -> Iterator[Ctx]:
    yield from RUNS.ctx(stack_dir)


def test_the_stack_runs_on_the_clustered_engines() -> None:
    s = get_settings()
    assert is_cluster(), s.redis_url
    assert len(s.kafka_bootstrap.split(",")) == 3 and s.kafka_replication == 3


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", list(ALL))
async def test_node_loss_loses_nothing(ctx: Ctx, scenario: str) -> None:
    result = await RUNS.play(ctx, scenario)
    v = result.verdict
    assert v.ok, explain(result)
    assert v.accepted > 0 and v.accepted == v.stored == v.counted
