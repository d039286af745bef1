"""Where the time goes: summaries of py-spy's collapsed stacks (``--format raw``).

Each line of a raw profile is ``frame;frame;...;leaf COUNT`` (outermost first),
a frame being ``function (file:line)``. The summary gives, per process, the
functions with the most samples at the top of the stack (self) and the
project's own functions with the most samples anywhere below them (inclusive).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROJECT = ("services/", "realtime_sio/", "contracts/", "loadtests/")


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
    """Total samples, top self frames and top inclusive project frames (shares in %)."""
    selfs: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    idle = total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        if any(w in leaf for w in ("select (", "epoll", "_run_once", "poll (")):
            idle += n
        selfs[leaf] += n
        for f in set(frames):
            if any(p in f for p in PROJECT):
                incl[f] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(top)] if total else []

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
