"""The test stack itself: its process manager, its ports, waiting for it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from infra.stack import read_layout

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def stack_cmd(stack_dir: Path, *args: str, timeout: float = 180) -> None:
    """``python -m infra.stack --dir <stack_dir> ARGS`` (e.g. ``restart kafka``); fails
    with the command's output when it fails."""
    r = subprocess.run(
        [sys.executable, "-m", "infra.stack", "--dir", str(stack_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise RuntimeError(f"infra.stack {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


def sio_ports(stack_dir: Path) -> list[int]:
    """Ports of the socket.io processes of the test stack (sio-1, sio-2, ...)."""
    return read_layout(stack_dir).sio_ports


def wait_until(check: Callable[[], T | None], timeout_s: float = 5.0, every_s: float = 0.1) -> T:
    """Poll ``check()`` until it returns something truthy; returns it (or fails)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every_s)
