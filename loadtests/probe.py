"""CPU and memory of the stack's processes (psutil on the pids in stack.json)."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import psutil

from infra.stack import read_pids


def stack_pids(run_dir: Path) -> dict[str, int]:
    """Process name -> pid, from a stack's state file."""
    return read_pids(run_dir)


def _tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (granian workers, PostgreSQL backends)."""
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class CpuMeter:
    """CPU seconds per named process tree between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int], alone: frozenset[str] | set[str] = frozenset()):
        """``alone``: names measured without their children (a parent of the others)."""
        self.pids = pids
        self.alone = alone
        self._t0 = 0.0
        self._cpu0: dict[str, dict[int, float]] = {}

    def _cpu(self, name: str, pid: int) -> dict[int, float]:
        out = {}
        procs = _tree(pid)
        for p in procs[:1] if name in self.alone else procs:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return out

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = {n: self._cpu(n, pid) for n, pid in self.pids.items()}
        self._sys0 = psutil.cpu_times()
        self._load0 = os.getloadavg()[0]

    def stop(self) -> dict[str, float]:
        """Percent of one core per process over the interval (children included)."""
        wall = self.wall = time.monotonic() - self._t0
        out = {}
        for n, pid in self.pids.items():
            now = self._cpu(n, pid)
            before = self._cpu0.get(n, {})
            used = sum(v - before.get(p, 0.0) for p, v in now.items())
            out[n] = round(100.0 * used / wall, 1) if wall > 0 else 0.0
        self.machine = self._machine_load(wall, sum(out.values()))
        return out

    def _machine_load(self, wall: float, ours_pct: float) -> dict:
        """How busy the whole machine was, and how much of it was not ours."""
        t = psutil.cpu_times()
        idle = (t.idle + getattr(t, "iowait", 0)) - (
            self._sys0.idle + getattr(self._sys0, "iowait", 0)
        )
        # Time the hypervisor gave to other guests while this one wanted to run (a VM's
        # "steal"): neither busy nor idle here, but it slows every figure of the run.
        stolen = getattr(t, "steal", 0.0) - getattr(self._sys0, "steal", 0.0)
        total = sum(t) - sum(self._sys0)
        busy_cores = (total - idle - stolen) / wall if wall > 0 else 0.0
        return {
            "interval_s": round(wall, 2),
            "loadavg_1m_at_start": round(self._load0, 1),
            "loadavg_1m_at_end": round(os.getloadavg()[0], 1),
            "busy_pct_of_one_core": round(100.0 * busy_cores, 1),
            "outside_pct_of_one_core": round(max(0.0, 100.0 * busy_cores - ours_pct), 1),
            "stolen_pct_of_one_core": round(100.0 * stolen / wall, 1) if wall > 0 else 0.0,
        }


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these process trees, MB."""
    total = 0
    for pid in pids:
        for p in _tree(pid):
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
    return round(total / 2**20, 1)


def machine() -> dict:
    """What the figures ran on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model or platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
    }
