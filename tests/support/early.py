"""Commands that run beside the rest of the suite: a test whose whole body is one long
self-contained, light command (the type check of the web client, the Compose check)
marks itself ``@pytest.mark.early(job)``. The job starts as soon as the session's
tests are collected; the test runs last and waits for the job's result, so the
command's wall time overlaps every other test instead of adding to it. The test
asserts exactly what it asserted when it ran the command itself. The cluster run
(tests/test_cluster.py), heavier, is one at the lowest CPU priority (``nice -n 19``):
at the same priority as the suite, its second stack made the suite's timing-bound
tests flaky on two cores."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.stack import ROOT


class EarlyJob:
    """One command, started at most once per session (in its own process group)."""

    def __init__(self, name: str, argv: list[str], timeout: float):
        self.name = name
        self.argv = argv
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.dir: Path | None = None

    def start(self) -> None:
        if self.proc is not None:
            return
        self.dir = Path(tempfile.mkdtemp(prefix=f"quizrt-{self.name}-"))
        self.started = time.monotonic()
        with open(self.dir / "out", "wb") as out, open(self.dir / "err", "wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def result(self) -> subprocess.CompletedProcess[str]:
        """Wait for the command (started now if it was not yet); what
        ``subprocess.run(argv, capture_output=True, text=True, timeout=...)`` returns.
        Its timeout counts from the start, as it did when the test ran it itself."""
        self.start()
        assert self.proc is not None and self.dir is not None
        left = self.timeout - (time.monotonic() - self.started)
        try:
            rc = self.proc.wait(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return subprocess.CompletedProcess(
            self.argv,
            rc,
            (self.dir / "out").read_text(errors="replace"),
            (self.dir / "err").read_text(errors="replace"),
        )

    def stop(self) -> None:
        """End the command if it still runs: SIGINT first (its clean-up runs, as on
        ctrl+c), SIGKILL after 60 s; then drop its output folder."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait_s in ((signal.SIGINT, 60.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait_s)
                    break
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


_started: list[EarlyJob] = []


def _skipped(item: pytest.Item) -> bool:
    """Whether a plain skip or a skipif with a true (boolean) condition marks the item."""
    if item.get_closest_marker("skip"):
        return True
    return any(
        m.args and isinstance(m.args[0], bool) and m.args[0] for m in item.iter_markers("skipif")
    )


def run_last(items: list[pytest.Item]) -> None:
    """Move the early tests to the end of the run (their jobs run meanwhile), and
    before them the tests that wait for an install ./dev test starts beside the
    suite (``after_install``), so the install has the rest of the run to finish."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("early") is not None,
            item.get_closest_marker("after_install") is not None,
        )
    )


def start_jobs(items: list[pytest.Item]) -> None:
    """Start the job of every selected early test that will not be skipped."""
    for item in items:
        mark = item.get_closest_marker("early")
        if mark is None or _skipped(item):  # (without a stack, stack tests carry a skip)
            continue
        job: EarlyJob = mark.args[0]
        job.start()
        _started.append(job)


def stop_jobs() -> None:
    for job in _started:
        job.stop()
    _started.clear()
