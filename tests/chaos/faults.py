"""Fault injectors for a running stack (the one ``./dev test`` started).

Restarts go through the process manager's own command
(``python -m infra.stack --dir <run dir> restart NAME``), so stack.json always
names the live pids and the test run's teardown stops what we started; a kill
is a SIGKILL sent at once to the pid stack.json names.
A graceful stop (SIGTERM, as an operator would stop Kafka) uses the same
Stack object in a child process. All of them run in a worker thread so the simulated
players keep playing meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from infra.stack import pid_alive, read_pids
from services.common.redis import redis_from_url
from tests.support.stack import ROOT, stack_cmd


def sigkill(stack_dir: Path, *names: str) -> None:
    """SIGKILL the named processes at this very moment (their process groups), with no
    helper process start-up in between; stack.json keeps the dead pid until ``restart``."""
    pids = processes(stack_dir)
    for name in names:
        os.killpg(pids[name], signal.SIGKILL)


async def restart(stack_dir: Path, *names: str) -> float:
    """(Re)start the named processes and wait until they are ready; returns seconds."""
    t0 = time.monotonic()
    await asyncio.to_thread(stack_cmd, stack_dir, "restart", *names)
    return time.monotonic() - t0


async def stop(stack_dir: Path, name: str) -> float:
    """Stop one process gracefully (SIGTERM, SIGKILL after 15 s); returns seconds.

    Runs in a child process: Stack.stop reaps every exited child of its caller.
    """
    code = (
        "import sys; from pathlib import Path; from infra.stack import Stack; "
        "Stack.load(Path(sys.argv[1])).stop(sys.argv[2])"
    )
    t0 = time.monotonic()
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code, str(stack_dir), name],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    return time.monotonic() - t0


def processes(stack_dir: Path) -> dict[str, int]:
    """name -> pid of every process stack.json lists."""
    return read_pids(stack_dir)


def dead_processes(stack_dir: Path) -> list[str]:
    """Names in stack.json whose pid is not alive."""
    return [n for n, pid in processes(stack_dir).items() if not pid_alive(pid)]


async def flushall(redis_url: str) -> None:
    """Redis loses everything (FLUSHALL), as after a restart without persistence."""
    r = redis_from_url(redis_url)
    try:
        await r.flushall()
    finally:
        await r.aclose()


async def wait_healthy(base_url: str, timeout: float = 60) -> float:
    """Wait until every service answers its health check through nginx; returns seconds."""
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=3) as c:
        while True:
            try:
                answers = [await c.get(f"/api/{s}/health") for s in ("iam", "quiz", "leaderboard")]
                # "ok", not just 200: the quiz service answers 200 while Kafka or Redis
                # is down (it still takes answers), but then says "degraded".
                if all(r.status_code == 200 and r.json()["status"] == "ok" for r in answers):
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"stack not healthy after {timeout}s")
            await asyncio.sleep(0.2)
