"""Where the time goes: summaries of py-spy's collapsed stacks (``--format raw``).

Each line of a raw profile is ``frame;frame;...;leaf COUNT`` (outermost first),
a frame being ``function (file:line)``; with ``--subprocesses`` the stack starts
with ``process PID:"cmdline"`` entries. The summary gives, for the server
process, the functions with the most samples at the top of the stack (self)
and the project's own functions with the most samples anywhere in the stack
(inclusive).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROJECT = ("services/", "realtime_sio/", "contracts/", "loadtests/")
# Leaf frames that mean "waiting for work": uvloop's loop runs in C below these.
LOOP_LEAVES = (
    "Runner.run (",
    "run_until_complete (",
    "run_forever (",
    "select (",
    "_run_once (",
    "uvloop.run (",
    # granian's worker thread sits in the Rust server below these.
    "_spawn_asgi_lifespan_worker (",
    "_spawn_asgi_worker (",
)


def _short(frame: str) -> str:
    """``function (file)`` with the file trimmed to its package path, no line number."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    f = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return f"{m.group('func')} ({f})"


def summarize(raw: Path, top: int = 12) -> dict:
    """Samples of the innermost process (a granian worker, not its supervisor), the
    share spent waiting in the event loop, and the top self and inclusive project
    frames as % of the busy samples."""
    parsed: list[tuple[int, list[str], int]] = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        depth = sum(1 for f in parts if f.startswith("process ") and ':"' in f)
        frames = [
            _short(f) for f in parts if f.strip() and not (f.startswith("process ") and ':"' in f)
        ]
        parsed.append((depth, frames, int(count)))
    deepest = max((d for d, _, _ in parsed), default=0)
    selfs: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    idle = total = 0
    for depth, frames, n in parsed:
        if depth != deepest:
            continue  # the supervisor process (granian's parent): not the server
        total += n
        if not frames or any(w in frames[-1] for w in LOOP_LEAVES):
            idle += n  # in the event loop's C code (uvloop) or native threads
            continue
        selfs[frames[-1]] += n
        for f in set(frames):
            if any(p in f for p in PROJECT) and not f.startswith("<module>"):
                incl[f] += n
    busy = total - idle

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / busy, 1)) for k, v in c.most_common(top)] if busy else []

    return {
        "samples": total,
        "idle_pct": round(100.0 * idle / total, 1) if total else None,
        "self": pct(selfs),
        "inclusive_project": pct(incl),
    }


def markdown(profiles: dict[str, dict]) -> list[str]:
    """Lines for bench.md: one block per profiled process."""
    lines: list[str] = []
    for name, s in profiles.items():
        lines += [
            "",
            f"### {name}: {s['samples']} samples ({_pct(s['idle_pct'])} waiting)",
            "",
            "| self | % | project function (inclusive) | % |",
            "|---|---|---|---|",
        ]
        rows = max(len(s["self"]), len(s["inclusive_project"]))
        for i in range(rows):
            a = s["self"][i] if i < len(s["self"]) else ("", None)
            b = s["inclusive_project"][i] if i < len(s["inclusive_project"]) else ("", None)
            lines.append(f"| `{a[0]}` | {_pct(a[1])} | `{b[0]}` | {_pct(b[1])} |")
    return lines


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x}%"
