"""What a server of the stack is (``Server``: its command, environment, readiness
check, log and ports) and the one way to start servers (``start``); servers.py lists
them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.stack.layout import EXTERNAL_VARS
from infra.stack.procs import Stack
from infra.stack.util import http_ok, log_since, port_open, say, wait_for


@dataclass(frozen=True)
class Log:
    """A server's log file and its size when this start began (a restart appends)."""

    path: Path
    offset: int

    def since_start(self) -> bytes:
        return log_since(self.path, self.offset) if self.path.exists() else b""


def is_ready(s: Server, log: Log) -> bool:
    return s.ready(log) if s.ready else port_open(s.ports[0])


@dataclass(frozen=True)
class Server:
    """One server of a stack: all that starting, checking and stopping it needs."""

    name: str  # in stack.json, and its log is logs/NAME.log
    group: str  # infra, service, edge or admin
    # Readies its folders and files, then returns the command line.
    command: Callable[[Stack], list[str]]
    ports: tuple[int, ...] = ()  # what it listens on (refused up front when taken)
    # Whether it serves, given what its log gained since this start (by default: its
    # first port accepts connections).
    ready: Callable[[Log], bool] | None = None
    where: str = ""  # where it serves, for the progress lines
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this user when started as root
    external: str = ""  # the Layout.external key that replaces it (nothing started)
    port_var: str = ""  # the variable that moves its port alone
    ready_timeout: float = 60
    stop_timeout: float = 10  # `down`: SIGKILL after this many seconds
    after: Callable[[Stack], None] | None = None  # once ready, before anything else


def answering(url: str, any_status: bool = True) -> Callable[[Log], bool]:
    """An HTTP answer (with ``any_status``, even an error status: the process serves)."""
    return lambda _log: http_ok(url, expect_any=any_status)


def logged(marker: bytes) -> Callable[[Log], bool]:
    return lambda log: marker in log.since_start()


def start(stack: Stack, servers: Sequence[Server]) -> list[str]:
    """Start those of ``servers`` that neither run already nor are replaced by a
    QUIZ_*_URL server, all at once, then wait until each is ready. Returns the names
    started; exits with the log's tail when one dies or is not ready in time."""
    lay = stack.layout
    started: list[tuple[Server, Log, int]] = []
    for s in servers:
        if s.external in lay.external:
            value = lay.external[s.external].split("@")[-1]  # no credentials
            say(f"{s.name}: using {value} ({EXTERNAL_VARS[s.external]})")
            continue
        if stack.running(s.name):
            if s.group != "service":
                say(f"{s.name}: already running on {s.where}")
            continue
        argv = s.command(stack)
        path = stack.log(s.name)
        log = Log(path, path.stat().st_size if path.exists() else 0)
        pid = stack.spawn(s.name, argv, env=s.env, user=s.user, group=s.group)
        started.append((s, log, pid))
    for s, log, pid in started:
        wait_for(s.name, functools.partial(is_ready, s, log), s.ready_timeout, log.path, pid)
        if s.after:
            s.after(stack)
        if s.group != "service":
            say(f"{s.name}: ready on {s.where}")
    names = [s.name for s, _, _ in started if s.group == "service"]
    if names:
        say(f"services: {', '.join(names)} ready")
    return [s.name for s, _, _ in started]
