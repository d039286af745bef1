"""The web client in a real browser: Debian's Chromium driven by playwright-core.

The scenario lives in ``tests/browser/game.mjs`` (Node): a host and three players
play a live session to the end and see the same leaderboard, one player reloads
mid-game, and a self-paced public quiz is played from the quiz list. Screenshots
land in ``reports/screenshots/``; ``QUIZRT_DOCS_SCREENSHOTS=1`` also refreshes
the two README pictures in ``docs/screenshots/``.

What the test needs it installs when it can (root on Debian: ``apt-get install
chromium`` / ``nodejs npm``); otherwise it fails with the command to run. It never
skips silently: a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import ROOT

pytestmark = [pytest.mark.stack, pytest.mark.slow]

CHROMIUM = os.environ.get("QUIZRT_CHROMIUM", "/usr/bin/chromium")
SCENARIO = ROOT / "tests" / "browser" / "game.mjs"
SCENARIO_TIMEOUT_S = 300


def _apt_install(*packages: str) -> str:
    """Install Debian packages as root; returns why it could not, or ''."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("apt-get") or not Path("/etc/debian_version").exists():
        return "not Debian (no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return "" if r.returncode == 0 else f"apt-get failed: {r.stderr[-800:]}"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of the Chromium binary, installed with apt-get if missing and possible."""
    if not Path(CHROMIUM).exists():
        why = _apt_install("chromium")
        if not Path(CHROMIUM).exists():
            pytest.fail(
                f"{CHROMIUM} is missing and could not be installed ({why}); "
                "run `sudo apt-get install -y chromium` or set QUIZRT_CHROMIUM"
            )
    return CHROMIUM


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with web/node_modules (socket.io-client, playwright-core) in place."""
    if not shutil.which("node") or not shutil.which("npm"):
        why = _apt_install("nodejs", "npm")
        if not shutil.which("node") or not shutil.which("npm"):
            pytest.fail(
                f"node/npm are missing and could not be installed ({why}); "
                "run `sudo apt-get install -y nodejs npm`"
            )
    # Usually a no-op (./dev test built it); installs playwright-core after a lock change.
    r = subprocess.run(["sh", str(ROOT / "web" / "build.sh")], capture_output=True, text=True)
    assert r.returncode == 0, f"web/build.sh failed:\n{r.stdout}\n{r.stderr}"
    return shutil.which("node") or "node"


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
