"""The process table of one stack: which server runs under which pid, kept in
``stack.json`` so that any later command (``down``, ``restart``, a test) finds it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from infra.stack.layout import Layout, Proc, State, read_state, state_file, write_state
from infra.stack.util import ROOT, pid_alive, reap

# Servers start and stop from several threads at once (cli.cmd_down, cmd_test).
STATE_LOCK = threading.RLock()


class Stack:
    """A run folder with its state file: which processes run under which pid."""

    def __init__(self, layout: Layout, procs: dict[str, Proc] | None = None):
        """The stack of ``layout``; its processes are those of the run folder's
        stack.json unless given."""
        self.layout = layout
        self.dir = layout.run_dir
        self.logs = self.dir / "logs"
        self.state_file = state_file(self.dir)
        if procs is None:
            state = read_state(self.dir)
            procs = state.procs if state else {}
        self.procs = procs

    @classmethod
    def load(cls, run_dir: Path) -> Stack | None:
        state = read_state(run_dir)
        return None if state is None else cls(state.layout, state.procs)

    def save(self) -> None:
        with STATE_LOCK:
            write_state(State(layout=self.layout, procs=self.procs))

    def running(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and pid_alive(p.pid)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        user: str | None = None,
        group: str = "service",
    ) -> int:
        """Start one process in its own process group, output to logs/NAME.log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **self.layout.service_env(), **(env or {})}
        full_env["PYTHONUNBUFFERED"] = "1"
        if user and os.geteuid() == 0:
            argv = ["runuser", "-u", user, "--", *argv]
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with STATE_LOCK:
            self.procs[name] = Proc(pid=proc.pid, argv=argv, group=group)
            self.save()
        return proc.pid

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Signal the process group of ``name``, SIGKILL it after ``timeout`` seconds,
        and forget it."""
        p = self.procs.get(name)
        if not p:
            return
        if pid_alive(p.pid):
            kill_group(p.pid, sig, timeout)
        reap()
        with STATE_LOCK:
            self.procs.pop(name, None)
            self.save()


def kill_group(pid: int, sig: int, timeout: float) -> None:
    """Send ``sig`` to the process group led by ``pid``; SIGKILL what is left after
    ``timeout`` seconds."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.1)
