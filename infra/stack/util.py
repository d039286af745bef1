"""What every part of the stack manager uses: the checkout's folders, progress lines,
ports, pids and waiting for a server to come up."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "quizrt"
T0 = time.monotonic()


def say(msg: str) -> None:
    """One progress line with the time since start."""
    # One write per line: servers start and stop from several threads at once.
    sys.stdout.write(f"[{time.monotonic() - T0:6.1f}s] {msg}\n")
    sys.stdout.flush()


def at_once(*steps: Callable[[], object]) -> None:
    """Run the steps in threads at once; the first failure (a ``die`` too) is raised."""
    with ThreadPoolExecutor(len(steps)) as pool:
        for f in [pool.submit(step) for step in steps]:
            f.result()


def die(msg: str) -> NoReturn:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(1)


# Ports handed out by free_port, per owner pid, for every stack of this checkout: a
# test stack (and the cluster run beside it) takes its ports when it starts, but some
# servers listen only later (Redis Commander, a server a fault test restarts), and
# another stack must not take such a port meanwhile.
PORTS_FILE = ROOT / ".run" / "ports.json"


def free_port() -> int:
    """A port nothing listens on and no live stack of this checkout has taken."""
    PORTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(PORTS_FILE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            taken: dict[str, list[int]] = json.loads(PORTS_FILE.read_text())
        except (OSError, ValueError):
            taken = {}
        taken = {pid: ports for pid, ports in taken.items() if pid_alive(int(pid))}
        reserved = {p for ports in taken.values() for p in ports}
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port: int = s.getsockname()[1]
            if port not in reserved:
                break
        taken.setdefault(str(os.getpid()), []).append(port)
        PORTS_FILE.write_text(json.dumps(taken))
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def wait_for(
    what: str,
    check: Callable[[], object],
    timeout: float,
    log: Path | None = None,
    pid: int | None = None,
) -> None:
    """Poll ``check`` until it is true; exit with the log's tail when ``pid`` dies or
    ``timeout`` seconds pass first (an exception in ``check`` counts as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        if pid is not None and not pid_alive(pid):
            die(f"{what} exited during start-up; last log lines:\n{log_tail(log)}")
        time.sleep(0.1)
    die(f"{what} not ready after {timeout:.0f}s; last log lines:\n{log_tail(log)}")


def log_tail(log: Path | None, size: int = 3000) -> str:
    return log.read_text(errors="replace")[-size:] if log and log.exists() else ""


def log_since(path: Path, offset: int) -> bytes:
    """What a log file gained after ``offset`` bytes."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def http_ok(url: str, expect_any: bool = False) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status < 500 or expect_any)
    except urllib.error.HTTPError as e:
        return expect_any or e.code < 500
    except OSError:
        return False
