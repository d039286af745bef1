"""The generator's worker processes, driven over JSON lines (see ``loadtests.worker``)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]


class WorkerError(Exception):
    pass


class WorkerProc:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc
        self.pid = proc.pid

    async def send(self, cmd: str, **data: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode({"cmd": cmd, **data}) + b"\n")
        await self.proc.stdin.drain()

    async def expect(
        self, event: str, on_progress: Callable[[dict], None] | None = None, timeout: float = 600
    ) -> dict:
        """Read lines until ``event``; ``progress`` lines go to ``on_progress``."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise WorkerError(f"worker {self.pid} exited (waiting for {event})")
                msg = msgspec.json.decode(line)
                kind = msg.pop("event")
                if kind == event:
                    return msg
                if kind == "error":
                    raise WorkerError(f"worker {self.pid}: {msg['cmd']}: {msg['error']}")
                if kind == "progress" and on_progress:
                    on_progress(msg)


class WorkerPool:
    """``n`` generator processes; ``ask`` sends one command to each and gathers replies."""

    def __init__(self, workers: list[WorkerProc]):
        self.workers = workers

    @classmethod
    async def start(cls, n: int) -> WorkerPool:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = []
        for _ in range(n):
            p = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "loadtests.worker",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 28,
            )
            procs.append(WorkerProc(p))
        for w in procs:
            await w.expect("hello", timeout=60)
        return cls(procs)

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    async def ask(
        self,
        cmd: str,
        expect: str,
        per_worker: list[dict] | None = None,
        on_progress: Callable[[int, dict], None] | None = None,
        timeout: float = 600,
        **common: Any,
    ) -> list[dict]:
        """Send ``cmd`` to every worker (with its own arguments, if given); their replies."""
        for i, w in enumerate(self.workers):
            await w.send(cmd, **common, **(per_worker[i] if per_worker else {}))

        def progress_of(i: int) -> Callable[[dict], None] | None:
            if on_progress is None:
                return None
            return lambda m: on_progress(i, m)

        replies = await asyncio.gather(
            *(w.expect(expect, progress_of(i), timeout) for i, w in enumerate(self.workers))
        )
        return list(replies)

    async def close(self) -> None:
        for w in self.workers:
            try:
                await w.send("close")
            except (BrokenPipeError, ConnectionResetError):
                pass
        for w in self.workers:
            try:
                await asyncio.wait_for(w.proc.wait(), 10)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
