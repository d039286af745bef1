"""Fault tests: a real game per scenario, one injected fault, and the exact
three-way comparison (tests/chaos/). Nothing accepted may be lost or counted twice.

In ``./dev test`` they run with small games and short outages; ``just chaos``
runs them with QUIZ_CHAOS_FULL=1 (30 s Kafka outage, more players) and writes
reports/chaos.md (QUIZ_CHAOS_REPORT).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.report import Runs, explain
from tests.chaos.scenarios import ALL, Ctx

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it kills and restarts servers.
pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.alone]

RUNS = Runs(ALL)


@pytest.fixture(scope="module")
def ctx(stack_dir: Path) -> Iterator[Ctx]:
    yield from RUNS.ctx(stack_dir)


@pytest.mark.timeout(600)  # `just chaos` sizes on a busy 2-core machine
@pytest.mark.parametrize("scenario", list(ALL))
async def test_fault_scenario_loses_nothing(ctx: Ctx, scenario: str) -> None:
    result = await RUNS.play(ctx, scenario)
    assert result.verdict.ok, explain(result)
    assert result.verdict.accepted > 0, "no answer was accepted at all"
