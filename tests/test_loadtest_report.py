"""The bench's report and profile summaries from made-up inputs (no servers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.profiles import summarize
from loadtests.report import derived, write_reports


def test_profile_summary_counts_the_worker_and_separates_waiting(tmp_path: Path) -> None:
    sup = 'process 1:"granian main"'
    wrk = 'process 2:"granian worker"'
    raw = tmp_path / "p.txt"
    raw.write_text(
        "\n".join(
            [
                f"{sup};<module> (granian:10);serve (granian/server/mp.py:1) 50",  # supervisor
                f"{sup};{wrk};MPServer._spawn_asgi_lifespan_worker (granian/server/mp.py:9) 40",
                f"{sup};{wrk};answer (/work/main/services/quiz/controllers.py:5);"
                "execute (site-packages/asyncpg/connection.py:7) 45",
                f"{sup};{wrk};answer (/work/main/services/quiz/controllers.py:5);"
                "verify (site-packages/jwt/api.py:3) 15",
            ]
        )
    )
    s = summarize(raw)
    assert s["samples"] == 100  # the supervisor's 50 are not the server's
    assert s["idle_pct"] == 40.0
    assert s["self"][0] == ("execute (asyncpg/connection.py)", 75.0)
    assert s["inclusive_project"] == [("answer (services/quiz/controllers.py)", 100.0)]


def _scenario(name: str, a2l_p99: float, delivered: int, expected: int) -> dict:
    lat = {"count": 3, "p50": 10.0, "p95": 20.0, "p99": a2l_p99, "max": a2l_p99}
    return {
        "scenario": name,
        "config": {"sessions": 20, "description": name},
        "players_connected": 2000,
        "answers_sent": 10,
        "answers_accepted": 10,
        "answer_status": {"200": 10},
        "answers_per_s": 200.0,
        "bursts": [],
        "answer_rtt_ms": lat,
        "answer_to_leaderboard_ms": lat,
        "answer_to_leaderboard": {},
        "leaderboard_events_delivered": delivered,
        "leaderboard_events_expected": expected,
        "leaderboard_delivery_pct": 100.0 * delivered / expected,
        "broadcasts": 5,
        "broadcasts_per_session_per_s": 1.0,
        "fanout_spread_ms": lat,
        "question_fanout_lag_ms": lat,
        "disconnects": 0,
        "disconnect_reasons": {},
        "errors": [],
        "setup_s": 1.0,
        "play_s": 2.0,
        "floor_room_size": "100",
        "samples": {"answer_to_leaderboard_ms": [1.0, 2.0, 3.0], "answer_rtt_ms": [1.0, 2.0]},
    }


def test_report_checks_targets_and_writes_every_file(tmp_path: Path) -> None:
    result: dict[str, Any] = {
        "command": "just bench",
        "started": "now",
        "machine": {
            "nproc": 2,
            "ram_gb": 1,
            "cpu_model": "x",
            "kernel": "k",
            "python": "3",
            "commit": "c",
        },
        "generator": {"workers": 2, "client": "c"},
        "stack": {"processes": {"quiz": 2, "sio": 2}},
        "floors": {
            "http_post": {"requests_per_s": 8000.0, "rtt_ms": {"p99": 20.0}},
            "sio_room_emit": {
                "100": {
                    "clients": 100,
                    "emit_to_last_client_ms": {"p50": 40.0},
                    "emit_to_client_ms": {},
                    "delivered": 1,
                    "expected": 1,
                }
            },
        },
        "scenarios": {"many-rooms": _scenario("many-rooms", 250.0, 99, 100)},
    }
    checks = derived(result)["many-rooms"]["checks"]
    assert checks["a2l p99 <= 100 ms"] is False
    assert checks["a2l p50 <= 30 ms"] is True
    assert checks["100% events delivered"] is False
    assert not any(k.startswith("top-10") for k in checks)  # not timed at the others
    others = {"count": 900, "p50": 31.0, "p95": 60.0, "p99": 90.0, "max": 95.0}
    result["scenarios"]["many-rooms"]["answer_to_leaderboard_top10_others_ms"] = others
    checks = derived(result)["many-rooms"]["checks"]
    assert checks["top-10 answers at the others: p99 <= 100 ms"] is True
    assert checks["top-10 answers at the others: p50 <= 30 ms"] is False
    result["scenarios"]["stadium"] = {
        **_scenario("stadium", 90.0, 100, 100),
        "answer_to_leaderboard_top10_others_ms": others,
    }
    checks = derived(result)["stadium"]["checks"]  # the bare emit to 100: 40 ms
    assert checks["top-10 answers at the others: p99 <= 1.5 x bare emit"] is False
    assert checks["top-10 answers at the others: p50 <= 0.7 x bare emit"] is False
    paths = write_reports(result, tmp_path)
    assert json.loads((tmp_path / "bench.json").read_text())["derived"]
    assert "| many-rooms |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench-latency.png").stat().st_size > 1000
    assert "MISSED" in str(paths["summary"])


def test_machine_load_counts_the_hypervisors_steal_apart_from_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a VM, time stolen by the hypervisor is neither busy nor idle: the report
    gives it its own column instead of counting it as work outside the stack."""
    from collections import namedtuple

    import psutil

    from loadtests.probe import CpuMeter

    T = namedtuple("T", "user system idle iowait steal")
    times = iter([T(0.0, 0.0, 0.0, 0.0, 0.0), T(6.0, 2.0, 8.0, 0.0, 4.0)])
    monkeypatch.setattr(psutil, "cpu_times", lambda: next(times))
    meter = CpuMeter({})
    meter.start()
    load = meter._machine_load(10.0, ours_pct=50.0)
    assert load["busy_pct_of_one_core"] == 80.0  # 8 s of user + system in 10 s
    assert load["stolen_pct_of_one_core"] == 40.0
    assert load["outside_pct_of_one_core"] == 30.0
