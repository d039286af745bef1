"""The web client in a real browser: Debian's Chromium driven by playwright-core.

The scenario lives in ``tests/browser/game.mjs`` (Node): a host and three players
play a live session to the end and see the same leaderboard, one player reloads
mid-game, and a self-paced public quiz is played from the quiz list. Screenshots
land in ``reports/screenshots/``; ``QUIZRT_DOCS_SCREENSHOTS=1`` also refreshes
the two README pictures in ``docs/screenshots/``.

What the test needs the ``chromium`` and ``node`` fixtures install when they can
(tests/support/browser.py); otherwise it fails with the command to run. It never
skips silently: a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.stack import ROOT

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SCENARIO = ROOT / "tests" / "browser" / "game.mjs"
SCENARIO_TIMEOUT_S = 300


def test_live_and_self_paced_games_in_chromium(base_url: str, chromium: str, node: str) -> None:
    env = {**os.environ, "QUIZ_BASE_URL": base_url, "QUIZRT_CHROMIUM": chromium}
    r = subprocess.run(
        [node, str(SCENARIO)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )
    assert r.returncode == 0, (
        f"browser scenario failed (screenshots in reports/screenshots/):\n"
        f"{r.stderr[-6000:]}\n{r.stdout[-2000:]}"
    )
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    steps = dict(summary["steps"])
    assert "podium on every page" in steps
    assert "self-paced quiz played from the list" in steps
    assert len(summary["final_board"]) == 3
    # One board sync per live question, each seen on all four pages.
    assert len(summary["board_sync_ms"]) == 4
    assert summary["reload_redraw_ms"] is not None
    assert summary["offline_recovery_ms"] is not None
    print(
        f"\nbrowser scenario: {summary['total_ms']} ms; answer -> same board on 4 pages "
        f"(ms, after the last answer reply): {summary['board_sync_ms']}; "
        f"reload -> redrawn: {summary['reload_redraw_ms']} ms; back online -> question shown: "
        f"{summary['offline_recovery_ms']} ms; steps (ms since start): "
        f"{summary['steps']}"
    )
