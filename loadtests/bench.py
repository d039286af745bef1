"""The benchmark: stack, floors and scenarios in one run on this machine.

    python -m loadtests.bench [--quick] [--use-running] [--scenarios a,b] [--workers N]
                              [--profile] [--out reports]

1. Brings up its own stack on free ports (``.run/bench``; process counts from
   QUIZ_PROCS_QUIZ / _SIO / _CONSUMER / ... as for ``./dev up``), or with
   ``--use-running`` measures the ``./dev up`` stack. All load comes from
   127.0.0.1 and nginx limits per client address, so the bench's own stack runs
   with raised limits (``BENCH_RATES``, written into the report); the defaults in
   infra/stack/nginx.py stay as they are.
2. Measures the floors in the same run: the bare Litestar+msgspec POST and the bare
   python-socketio room emit (``loadtests.floors``), with the same workers.
3. Runs the scenarios, the generator in worker processes (``loadtests.worker``),
   measuring CPU per process and the socket.io tier's resident memory.
4. Writes reports/bench.json, reports/bench.md and reports/bench-latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtests import scenarios
from loadtests.floors.measure import FloorServers, gateway_floor, http_floor, sio_floor
from loadtests.pool import WorkerPool
from loadtests.probe import CpuMeter, machine, rss_mb, stack_pids
from loadtests.profiles import summarize
from loadtests.report import write_reports
from loadtests.runner import run_scenario
from services.common.redis_cluster import node_url

ROOT = Path(__file__).resolve().parents[1]
T0 = time.monotonic()

# Raised limits for the bench's own stack (format of QUIZ_RATE_*: "rate:burst").
BENCH_RATES = {
    "QUIZ_RATE_ANSWERS": "20000r/s:40000",
    "QUIZ_RATE_GUESTS": "5000r/s:10000",
    "QUIZ_RATE_JOIN": "20000r/s:40000",
    "QUIZ_RATE_API": "20000r/s:40000",
}
FULL = ["classroom", "stadium", "many-rooms", "self-paced", "spike"]
QUICK = ["classroom", "many-rooms"]


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class BenchStack:
    """The stack under test: started here (own ports) or the running ``./dev up`` one."""

    def __init__(self, use_running: bool):
        from infra import stack as st

        self.st = st
        self.own = not use_running
        if use_running:
            run_dir = Path(os.environ.get("QUIZ_RUN_DIR", ROOT / ".run" / "dev"))
            loaded = st.Stack.load(run_dir)
            if loaded is None or not loaded.running("nginx"):
                raise SystemExit(f"no running stack in {run_dir}: `./dev up` first")
            self.stack = loaded
        else:
            for k, v in BENCH_RATES.items():
                os.environ.setdefault(k, v)
            run_dir = ROOT / ".run" / "bench"
            old = st.Stack.load(run_dir)
            if old is not None:
                st.cmd_down(old)
            shutil.rmtree(run_dir, ignore_errors=True)
            lay = st.Layout.test(run_dir)
            lay.durable = True  # fsync on, as in ./dev up
            self.stack = st.Stack(lay)

    def up(self) -> None:
        if not self.own:
            return
        for attempt in (1, 2):
            say(f"stack: starting in {self.stack.dir} (nginx on {self.stack.layout.http_port})")
            try:
                self.st.cmd_infra_up(self.stack)
                self.st.start_services(self.stack)
                self.st.start_nginx(self.stack)
                return
            except SystemExit:
                # Free ports are picked before the servers bind them; on a shared
                # machine another process can take one in between: retry afresh.
                if attempt == 2:
                    raise
                say("stack: a process did not start (port taken meanwhile?); retrying once")
                self.st.cmd_down(self.stack)
                shutil.rmtree(self.stack.dir, ignore_errors=True)
                lay = self.st.Layout.test(self.stack.dir)
                lay.durable = True
                self.stack = self.st.Stack(lay)

    def down(self) -> None:
        if self.own:
            self.st.cmd_down(self.stack)

    @property
    def base_url(self) -> str:
        return self.stack.layout.base_url

    def layout(self) -> dict:
        lay = self.stack.layout
        return {
            "iam": len(lay.iam_ports),
            "quiz": len(lay.quiz_ports),
            "leaderboard": len(lay.leaderboard_ports),
            "sio": len(lay.sio_ports),
            "consumer": lay.consumers,
            "durable_postgres": lay.durable,
        }

    def rates(self) -> dict[str, str]:
        """The limits nginx runs with, read back from its rendered config."""
        conf = self.stack.dir / "nginx" / "nginx.conf"
        out = {}
        text = conf.read_text() if conf.exists() else ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("limit_req_zone"):
                zone = line.split("zone=")[1].split(":")[0]
                out[zone] = line.split("rate=")[1].rstrip(";")
        return out


def sio_pids(pids: dict[str, int]) -> list[int]:
    return [p for n, p in pids.items() if n.startswith("sio-")]


async def bench(args: argparse.Namespace) -> dict:
    names = args.scenarios.split(",") if args.scenarios else (QUICK if args.quick else FULL)
    chosen = [scenarios.get(n, args.quick) for n in names]
    bs = BenchStack(args.use_running)
    result: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
        "command": " ".join(
            [
                "just",
                "bench-quick" if args.quick else "bench",
                *(a for a in sys.argv[1:] if a != "--quick"),
            ]
        ),
        "generator": {"workers": args.workers, "client": "loadtests.client (asyncio, uvloop)"},
    }
    result["machine"]["loadavg_1m_at_start"] = round(os.getloadavg()[0], 1)
    say(
        f"machine: {result['machine']['nproc']} cores, {result['machine']['ram_gb']} GB,"
        f" {result['machine']['cpu_model']};"
        f" load average {result['machine']['loadavg_1m_at_start']}"
    )
    floors_dir = ROOT / ".run" / "bench-floors"
    floors: FloorServers | None = None
    pool: WorkerPool | None = None
    try:
        bs.up()
        lay = bs.layout()
        result["stack"] = {
            "own": bs.own,
            "base_url": bs.base_url,
            "processes": lay,
            "nginx_rates": bs.rates(),
            "raised_limits": dict(BENCH_RATES) if bs.own else {},
        }
        say(f"stack: {lay} at {bs.base_url}; nginx limits {result['stack']['nginx_rates']}")
        pool = await WorkerPool.start(args.workers)
        say(f"generator: {args.workers} worker processes {pool.pids}")

        # ---- floors
        shutil.rmtree(floors_dir, ignore_errors=True)
        # The bare floor is plain python-socketio: on a Redis Cluster, one node of it.
        floor_redis = node_url(bs.stack.layout.redis_url)
        floors = FloorServers(floors_dir, floor_redis, lay["quiz"], lay["sio"])
        await floors.start()
        say(f"floors: bare servers up behind nginx on {floors.port}")
        hf = await http_floor(
            pool,
            floors.port,
            connections=64,
            duration=4.0 if args.quick else 8.0,
            meter=CpuMeter(floors.pids()),
        )
        say(
            f"floor: bare POST {hf['requests_per_s']:.0f} req/s,"
            f" p99 {hf['rtt_ms']['p99']} ms ({hf['connections']} connections)"
        )
        hg = await gateway_floor(
            pool, floors, bs.stack.dir, bs.base_url, 64, duration=4.0 if args.quick else 8.0
        )
        rates = [hg[k]["requests_per_s"] for k in ("without_check", "with_check")]
        say(
            f"floor: bare POST without / with the gateway's check {rates[0]:.0f} / {rates[1]:.0f}"
            f" req/s, CPU added {hg['added_cpu_ms_per_request'] * 1000:.0f} us per request"
        )
        room_sizes = sorted({_room_size(sc) for sc in chosen if sc.mode == "live"})
        sio_floors = {}
        for n in room_sizes:
            f = await sio_floor(
                pool,
                floors.port,
                floor_redis,
                n,
                meter=CpuMeter(floors.pids()),
                sio_pids=[p for k, p in floors.pids().items() if k.startswith("bare-sio")],
            )
            sio_floors[str(n)] = f
            say(
                f"floor: bare room emit to {f['clients']} clients: last client p50"
                f" {f['emit_to_last_client_ms']['p50']} ms, every client p99"
                f" {f['emit_to_client_ms']['p99']} ms, delivered"
                f" {f['delivered']}/{f['expected']}"
            )
        result["floors"] = {"http_post": hf, "http_post_gateway": hg, "sio_room_emit": sio_floors}
        floors.stop()
        floors = None

        # ---- scenarios
        pids = stack_pids(bs.stack.dir)
        result["scenarios"] = {}
        for sc in chosen:
            say(f"scenario {sc.name}: {sc.description}")
            all_pids = {
                **pids,
                **{f"generator-{i + 1}": p for i, p in enumerate(pool.pids)},
                "bench-driver": os.getpid(),
            }
            # The driver started the stack and the workers: count its own CPU only.
            meter = CpuMeter(all_pids, alone={"bench-driver"})
            mem = {"before_mb": rss_mb(sio_pids(pids))}

            def on_phase(name: str, meter: CpuMeter = meter, mem: dict[str, Any] = mem) -> None:
                if name == "connected":
                    mem["connected_mb"] = rss_mb(sio_pids(pids))
                elif name == "play":
                    meter.start()
                elif name == "played":
                    mem["cpu"] = meter.stop()
                    mem["machine"] = meter.machine
                    mem["after_mb"] = rss_mb(sio_pids(pids))

            r = await run_scenario(bs.base_url, sc, pool, say, on_phase)
            sockets = r["players_connected"]
            r["cpu_pct_of_one_core"] = mem.pop("cpu", {})
            r["machine_load"] = mem.pop("machine", {})
            r["cpu_per_unit"] = cpu_per_unit(r)
            r["sio_rss_mb"] = mem
            if sockets:
                r["sio_rss_mb_per_1000_sockets"] = round(mem["connected_mb"] / sockets * 1000, 1)
                r["sio_rss_mb_per_1000_sockets_added"] = round(
                    (mem["connected_mb"] - mem["before_mb"]) / sockets * 1000, 1
                )
            r["floor_room_size"] = _nearest(sio_floors, _room_size(sc))
            result["scenarios"][sc.name] = r
            _say_scenario(r)
            if args.profile and (args.profile == "all" or sc.name in args.profile.split(",")):
                profiles = await _profile(bs, pool, sc, pids, args.out)
                result.setdefault("profiles", {}).update(profiles)
        return result
    finally:
        if pool is not None:
            await pool.close()
        if floors is not None:
            floors.stop()
        bs.down()


def cpu_per_unit(r: dict) -> dict[str, float | None]:
    """CPU time per unit of work during play: robust to other load on the machine,
    unlike latencies (a starved process is slow, but its work costs the same)."""
    cpu = r.get("cpu_pct_of_one_core", {})
    wall = r.get("machine_load", {}).get("interval_s") or 0.0

    def per(prefix: str, units: int, scale: float) -> float | None:
        if not units or not wall:
            return None
        pct = sum(v for k, v in cpu.items() if k.startswith(prefix))
        return round(pct / 100.0 * wall * scale / units, 3)

    answers = r["answers_accepted"]
    return {
        "quiz_ms_per_answer": per("quiz-", answers, 1e3),
        "postgres_ms_per_answer": per("postgres", answers, 1e3),
        "nginx_ms_per_answer": per("nginx", answers, 1e3),
        "iam_ms_per_answer": per("iam-", answers, 1e3),  # the gateway's verdicts (misses)
        "consumer_ms_per_broadcast": per("consumer-", r["broadcasts"], 1e3),
        "sio_us_per_delivery": per("sio-", r["leaderboard_events_delivered"], 1e6),
    }


def _room_size(sc: scenarios.Scenario) -> int:
    return sc.players // sc.sessions


def _nearest(floors: dict, size: int) -> str | None:
    if not floors:
        return None
    return min(floors, key=lambda k: abs(int(k) - size))


def _say_scenario(r: dict) -> None:
    a2l = r["answer_to_leaderboard_ms"]
    rtt = r["answer_rtt_ms"]
    load = r.get("machine_load", {})
    if load.get("outside_pct_of_one_core", 0) > 25:
        say(
            f"  WARNING: other work used {load['outside_pct_of_one_core']}% of a core during"
            f" {r['scenario']} (load average {load['loadavg_1m_at_start']}): figures are"
            " contended"
        )
    say(
        f"  {r['scenario']}: {r['answers_accepted']}/{r['answers_sent']} answers accepted,"
        f" {r['answers_per_s']}/s; round trip p50/p99 {rtt['p50']}/{rtt['p99']} ms;"
        f" answer->leaderboard p50/p99 {a2l['p50']}/{a2l['p99']} ms ({a2l['count']} timed);"
        f" events {r['leaderboard_events_delivered']}/{r['leaderboard_events_expected']};"
        f" disconnects {r['disconnects']}"
    )


async def _profile(
    bs: BenchStack, pool: WorkerPool, sc: scenarios.Scenario, pids: dict[str, int], out: Path
) -> dict[str, dict]:
    """Run ``sc`` again with py-spy on the hot path's processes (after the measured run,
    so the sampling does not perturb the figures above)."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    targets = [n for n in ("quiz-1", "consumer-1", "sio-1", "iam-1") if n in pids]
    procs = []
    duration = int(sc.questions * sc.cycle_s) + 5

    def on_phase(name: str) -> None:
        if name != "play":
            return
        for n in targets:
            for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
                dest = out / f"profile-{sc.name}-{n}.{ext}"
                procs.append(
                    subprocess.Popen(
                        [
                            pyspy,
                            "record",
                            "--pid",
                            str(pids[n]),
                            "--subprocesses",
                            "--nonblocking",
                            "--rate",
                            "50",
                            "--duration",
                            str(duration),
                            "--format",
                            fmt,
                            "--output",
                            str(dest),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )

    say(f"  profiling {sc.name} again with py-spy on {', '.join(targets)}")
    await run_scenario(bs.base_url, sc, pool, say, on_phase)
    for p in procs:
        await asyncio.to_thread(p.wait)
    say(f"  profiles in {out}/profile-{sc.name}-*.svg (and .txt, collapsed stacks)")
    found = {}
    for n in targets:
        raw = out / f"profile-{sc.name}-{n}.txt"
        if raw.exists() and raw.stat().st_size:
            found[f"{sc.name} / {n}"] = summarize(raw)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="loadtests.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="classroom + many-rooms, reduced")
    ap.add_argument(
        "--use-running",
        action="store_true",
        help="measure the ./dev up stack instead of starting one",
    )
    ap.add_argument("--scenarios", help=f"comma-separated, from {', '.join(FULL)}")
    ap.add_argument("--workers", type=int, default=2, help="generator processes")
    ap.add_argument(
        "--profile",
        nargs="?",
        const="all",
        metavar="SCENARIOS",
        help="re-run each scenario (or these, comma-separated) under py-spy; profiles under --out",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "reports")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(bench(args))
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    paths = write_reports(result, args.out)
    print(paths["summary"], flush=True)
    say(f"wrote {', '.join(str(p) for k, p in paths.items() if k != 'summary')}")
    ok = all(s["leaderboard_delivery_pct"] == 100.0 for s in result["scenarios"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
