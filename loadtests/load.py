"""``just load SCENARIO`` and ``just load-ui``: Locust with sizes from the scenario.

    python -m loadtests.load SCENARIO [--quick] [--players N] [--url URL] [LOCUST ARGS...]
    python -m loadtests.load --ui [--url URL]

Headless runs are bounded: users = players + the host driver, spawned at a rate
that the default nginx limits for one address accept, and a run time long enough
for setup and every question (the host driver stops the run earlier when the
sessions have ended). Reports: reports/locust/SCENARIO.html and SCENARIO_*.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from loadtests import scenarios

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="loadtests.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("scenario", nargs="?", default="classroom", choices=list(scenarios.SCENARIOS))
    ap.add_argument("--ui", action="store_true", help="open Locust's web UI instead")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--players", type=int)
    ap.add_argument(
        "--spawn-rate",
        type=float,
        default=40.0,
        help="players started per second (guest sign-in is limited per address)",
    )
    ap.add_argument("--url", default=os.environ.get("QUIZ_BASE_URL", "http://127.0.0.1:8080"))
    a, extra = ap.parse_known_args(argv)
    locust = str(Path(sys.executable).parent / "locust")
    base = [locust, "-f", str(ROOT / "loadtests" / "locustfile.py"), "--host", a.url]
    out = ROOT / "reports" / "locust"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if a.ui:
        print("Locust web UI on http://127.0.0.1:8089 (Ctrl-C stops it)", flush=True)
        argv_ = [*base, "--web-host", "127.0.0.1", "--scenario", a.scenario, *extra]
    else:
        sc = scenarios.get(a.scenario, a.quick).with_size(players=a.players)
        users = sc.players + 1
        run_time = int(
            users / a.spawn_rate
            + 60
            + (sc.questions * (sc.cycle_s if sc.mode == "live" else sc.answer_after_s[1] + 1))
        )
        name = a.scenario + ("-quick" if a.quick else "")
        argv_ = [
            *base,
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            str(a.spawn_rate),
            "--run-time",
            f"{run_time}s",
            "--scenario",
            a.scenario,
            "--players",
            str(sc.players),
            "--html",
            str(out / f"{name}.html"),
            "--csv",
            str(out / name),
            "--report-dir",
            str(out),
            "--only-summary",
            "--stop-timeout",
            "10",
            *(["--quick"] if a.quick else []),
            *extra,
        ]
        print(
            f"locust: {a.scenario}, {users} users (1 host driver), at most {run_time}s"
            f" against {a.url}; reports in {out}/{name}.html",
            flush=True,
        )
    os.execvpe(argv_[0], argv_, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
