"""Refusing to start, in one line, when a port of the stack is taken: by whom, and
which QUIZ_PORT_OFFSET (or QUIZ_*_PORT) would move this stack out of the way."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from infra.stack.layout import PORT_OFFSETS
from infra.stack.procs import Stack
from infra.stack.servers import servers
from infra.stack.util import die


def planned_ports(stack: Stack) -> list[tuple[int, str]]:
    """(port, process) of every listener that `up` would start now: what this stack
    already runs and the servers given by QUIZ_*_URL are left out (nginx first)."""
    lay = stack.layout
    table = sorted(servers(lay), key=lambda s: s.name != "nginx")
    return [
        (p, s.name)
        for s in table
        if s.external not in lay.external and not stack.running(s.name)
        for p in s.ports
    ]


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not listen on ``host:port`` (the way the servers bind)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_holder(port: int) -> str:
    """Who holds TCP ``port``, e.g. ``java (pid 4953, in /work/other-clone)``, from
    /proc/net/tcp{,6} and the processes' open sockets (the same facts as ``ss -ltnp``)."""
    listening: set[str] = set()
    bound: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] != "0":
                (listening if f[3] == "0A" else bound).add(f"socket:[{f[9]}]")
    sockets = listening or bound
    if not sockets:
        return "an unknown process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in sockets:
                    return describe_process(int(proc.name))
            except OSError:
                continue
    return "a process of another user (`sudo ss -ltnp` names it)"


def describe_process(pid: int) -> str:
    """``name (pid N, in CWD)``: the folder tells which checkout a stack runs from."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        name = "?"
    try:
        return f"{name} (pid {pid}, in {os.readlink(f'/proc/{pid}/cwd')})"
    except OSError:
        return f"{name} (pid {pid})"


def check_ports(stack: Stack) -> None:
    """Refuse to start anything, in one line, when a port of this stack is taken."""
    planned = planned_ports(stack)
    taken = [(p, n) for p, n in planned if port_taken(p)]
    if not taken:
        return
    lay = stack.layout

    def label(port: int, name: str) -> str:
        return "kafka controller" if name == "kafka" and port == lay.kafka_ctrl_port else name

    shown = taken[:3]  # a whole other stack holds a dozen: the first few tell enough
    what = "; ".join(f"port {p} ({label(p, n)}) is taken by {port_holder(p)}" for p, n in shown)
    if len(taken) > len(shown):
        what += f"; and {len(taken) - len(shown)} more ports of this stack (`ss -ltnp` lists them)"
    cur = int(os.environ.get("QUIZ_PORT_OFFSET") or 0)
    free = next((o for o in PORT_OFFSETS if not any(port_taken(p + o) for p, _ in planned)), None)
    if free is None:
        move = "QUIZ_PORT_OFFSET=10, 20, ... (moves every port)"
    else:
        move = f"QUIZ_PORT_OFFSET={cur + free} (moves every port; all free now)"
    port_var = {s.name: s.port_var for s in servers(lay)}
    one = sorted({port_var.get(n, "") for _, n in taken})
    if "" not in one and len(one) <= 2:  # one or two servers in the way: moving them is enough
        move += f" or {', '.join(v + '=PORT' for v in one)}"
    die(
        f"{what}; nothing was started. Move this stack with {move}, or stop the other"
        " stack (`./dev down` in its checkout)."
    )
