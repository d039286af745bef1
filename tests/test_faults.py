"""Fault tests: a real game per scenario, one injected fault, and the exact
three-way comparison (tests/chaos/). Nothing accepted may be lost or counted twice.

In ``./dev test`` they run with small games and short outages; ``just chaos``
runs them with QUIZ_CHAOS_FULL=1 (30 s Kafka outage, more players) and writes
reports/chaos.md (QUIZ_CHAOS_REPORT).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import report
from tests.chaos.scenarios import ALL, Ctx, Result

pytestmark = [pytest.mark.stack, pytest.mark.slow]

_results: list[Result] = []


@pytest.fixture(scope="module")
def ctx(stack_dir: Path) -> Iterator[Ctx]:
    c = Ctx.from_env(stack_dir)
    yield c
    out = os.environ.get("QUIZ_CHAOS_REPORT")
    if out and _results:
        report.write(Path(out), _results, full=c.full)


def _explain(r: Result) -> str:
    v = r.verdict
    return (
        f"{r.name}: sent {v.sent}, accepted {v.accepted}, stored {v.stored}, counted"
        f" {v.counted}; notes: {'; '.join(r.notes)}\nproblems:\n  " + "\n  ".join(v.problems[:30])
    )


@pytest.mark.timeout(600)  # `just chaos` sizes on a busy 2-core machine
@pytest.mark.parametrize("scenario", list(ALL))
async def test_fault_scenario_loses_nothing(ctx: Ctx, scenario: str) -> None:
    result = await ALL[scenario](ctx)
    _results.append(result)
    v = result.verdict
    print(
        f"\n{result.name} ({result.seconds:.1f}s): sent {v.sent}, accepted {v.accepted},"
        f" stored {v.stored}, counted {v.counted}, lb events {v.leaderboard_events},"
        f" reconnects {v.reconnects}, retried {v.retried} (5xx {v.server_errors}),"
        f" lag p50 {v.p50_lag_s} max {v.max_lag_s}, correct after redis {v.redis_correct_s}"
        f" clients {v.events_correct_s};"
        f" {'; '.join(result.notes)}"
    )
    assert result.verdict.ok, _explain(result)
    assert result.verdict.accepted > 0, "no answer was accepted at all"
