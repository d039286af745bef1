"""Run one scenario with the bench's generator: a host driver here, players in workers.

    python -m loadtests.runner classroom [--players N --sessions N --questions N
                                          --time-limit S --workers N --url URL]

Phases: the host creates the quiz and sessions; the workers sign players in, join
them and connect their sockets (``ready``); the versions in the join acks fix,
per session, what every client must receive from then on; the host plays the
questions (or self-paced players play); the workers wait until every answer has
found its snapshot; every client's received versions are compared with the union
of versions seen in its session (``events delivered/expected``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

from loadtests import scenarios
from loadtests.host import Host
from loadtests.pool import WorkerPool
from loadtests.scenarios import Scenario
from loadtests.stats import summary
from loadtests.tracker import at_others_summary

Say = Callable[[str], None]

# The hops of an answer, in order (contracts.HopTrace; emit_client from each receipt).
HOPS = (
    "arrive_commit",
    "commit_produce",
    "produce_ack",
    "ack_read",
    "read_emit",
    "emit_client",
    "arrive_client",
)
# The same for the answers that ranked in the top 10 (loadtests.tracker), with the
# client's send -> the quiz service's arrival first and the send -> emit last.
TOP10_HOPS = ("send_arrive", *(h for h in HOPS if h != "arrive_client"), "send_emit")


def _say(msg: str) -> None:
    print(msg, flush=True)


async def run_scenario(
    base_url: str,
    sc: Scenario,
    pool: WorkerPool,
    say: Say = _say,
    on_phase: Callable[[str], None] | None = None,
) -> dict:
    """Play ``sc`` against the stack at ``base_url``; the merged measurements."""
    u = urlparse(base_url)
    host_name, port = u.hostname or "127.0.0.1", u.port or 80
    phase = on_phase or (lambda _name: None)
    t_start = time.monotonic()
    host = Host(host_name, port)
    try:
        await host.sign_in()
        sessions = await _make_sessions(host, sc)
        say(f"  {sc.name}: {len(sessions)} session(s) ready; signing in {sc.players} players")
        n = len(pool.workers)
        per_worker: list[dict] = [{"assign": [], "seed": 1000 + i} for i in range(n)]
        for i in range(sc.players):
            per_worker[i % n]["assign"].append([i, sessions[i % len(sessions)]])
        progress = [0] * n
        last_say = [0.0]

        def on_progress(i: int, msg: dict) -> None:
            progress[i] = msg["ready"]
            if time.monotonic() - last_say[0] > 3:
                last_say[0] = time.monotonic()
                say(f"  {sc.name}: {sum(progress)}/{sc.players} players connected")

        t_join = time.monotonic()
        ready = await pool.ask(
            "players",
            "ready",
            per_worker,
            on_progress,
            host=host_name,
            port=port,
            scenario=sc.as_dict(),
        )
        join_s = time.monotonic() - t_join
        connected = sum(r["ready"] for r in ready)
        failures = [f for r in ready for f in r["failures"]]
        say(
            f"  {sc.name}: {connected}/{sc.players} players connected"
            + (
                f"; {sum(r['failed'] for r in ready)} failed, e.g. {failures[0]}"
                if failures
                else ""
            )
        )
        v0: dict[str, int] = {}
        for r in ready:
            for s, v in r["ack_versions"].items():
                v0[s] = max(v0.get(s, 0), v)
        phase("connected")
        t_setup = time.monotonic() - t_start
        await pool.ask("go", "started", v0=v0)
        t_play = time.monotonic()
        phase("play")
        if sc.mode == "live":
            await _host_plays(host, sc, sessions, say)
        drain_timeout = (
            20.0 if sc.mode == "live" else sc.questions * (sc.answer_after_s[1] + 2) + 20
        )
        drained = await pool.ask(
            "drain", "drained", timeout=drain_timeout + 60, wait_s=drain_timeout
        )
        t_play_end = time.monotonic()
        phase("played")
        union: dict[str, set[int]] = {}
        for r in drained:
            for s, vs in r["versions"].items():
                union.setdefault(s, set()).update(vs)
        results = await pool.ask(
            "audit",
            "result",
            union={s: sorted(v) for s, v in union.items()},
            top10_sent=[a for r in drained for a in r.get("top10_sent", [])],
        )
        out = merge(sc, results, ready, union, t_setup, t_play_end - t_play, len(sessions))
        out["join_s"] = round(join_s, 1)
        return out
    finally:
        host.close()


async def _make_sessions(host: Host, sc: Scenario) -> list[str]:
    """Live: one quiz, ``sc.sessions`` sessions. Self-paced: that many public quizzes."""
    if sc.mode == "live":
        quiz = await host.create_quiz(f"{sc.name} bench", sc.questions, sc.time_limit_s)
        return [(await host.open_session(quiz["id"]))["id"] for _ in range(sc.sessions)]
    made = [
        await host.create_quiz(f"{sc.name} bench {i}", sc.questions, sc.time_limit_s, public=True)
        for i in range(sc.sessions)
    ]
    missing = [q["id"] for q in made if not q.get("open_session_id")]
    listed = await host.public_sessions() if missing else {}
    return [str(q.get("open_session_id") or listed[q["id"]]) for q in made]


async def _host_plays(host: Host, sc: Scenario, sessions: list[str], say: Say) -> None:
    """Open each question for every session, wait out the cycle, end the sessions."""
    offsets = [i * sc.cycle_s / len(sessions) if sc.stagger else 0.0 for i in range(len(sessions))]

    async def play(sid: str, offset: float) -> None:
        await asyncio.sleep(offset)
        t0 = time.monotonic()
        for q in range(sc.questions + 1):
            await host_advance(host, sid)
            if q < sc.questions:
                # Sleep to the cycle's end on the host's own schedule (no drift).
                await asyncio.sleep(max(0.0, t0 + (q + 1) * sc.cycle_s - time.monotonic()))

    async def report() -> None:
        for q in range(sc.questions):
            await asyncio.sleep(sc.cycle_s)
            say(f"  {sc.name}: question {q + 1}/{sc.questions} played")

    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(play(s, o) for s, o in zip(sessions, offsets, strict=True)))
    finally:
        reporter.cancel()


async def host_advance(host: Host, sid: str) -> None:
    await host.advance(sid)


def merge(
    sc: Scenario,
    results: list[dict],
    ready: list[dict],
    union: dict[str, set[int]],
    setup_s: float,
    play_s: float,
    sessions: int,
) -> dict:
    """One scenario's figures from the workers' raw results."""
    status: dict[str, int] = {}
    outcome: dict[str, int] = {}
    for r in results:
        for k, v in r["status"].items():
            status[k] = status.get(k, 0) + v
        for k, v in r["outcome"].items():
            outcome[k] = outcome.get(k, 0) + v
    replies = [tuple(x) for r in results for x in r["replies_wall"]]
    accepted = sum(r["accepted"] for r in results)
    window = (max(x[2] for x in replies) - min(x[1] for x in replies)) if replies else 0.0
    # Per question index (the spike's bursts): accepted / (last reply - first send).
    bursts = []
    for q in sorted({x[0] for x in replies}):
        xs = [x for x in replies if x[0] == q]
        span = max(x[2] for x in xs) - min(x[1] for x in xs)
        bursts.append(
            {
                "question": q,
                "accepted": len(xs),
                "span_s": round(span, 3),
                "accepted_per_s": round(len(xs) / span, 1) if span > 0 else None,
            }
        )
    peak = _peak_per_second([x[2] for x in replies])
    spreads = [(s[1] - s[0]) * 1000.0 for r in results for s in r["spread"].values()]
    broadcasts = sum(len(v) for v in union.values())
    delivered = sum(r["events_delivered"] for r in results)
    expected = sum(r["events_expected"] for r in results)
    reasons: dict[str, int] = {}
    received: dict[str, int] = {}
    for r in results:
        for k, v in r["events"].items():
            received[k] = received.get(k, 0) + v
        for k, v in r["disconnect_reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    return {
        "scenario": sc.name,
        "config": sc.as_dict(),
        "players_connected": sum(r["players"] for r in results),
        "players_failed": sum(r["failed"] for r in ready),
        "setup_s": round(setup_s, 1),
        "play_s": round(play_s, 1),
        "answers_sent": sum(r["sent"] for r in results),
        "answers_accepted": accepted,
        "answer_status": status,
        "answers_per_s": round(accepted / window, 1) if window > 0 else None,
        "answers_per_s_peak_1s": peak,
        "bursts": bursts,
        "answer_rtt_ms": summary(x for r in results for x in r["rtt_ms"]),
        "answer_to_leaderboard_ms": summary(x for r in results for x in r["a2l_ms"]),
        "answer_to_leaderboard_top10_ms": summary(
            x for r in results for x in r.get("a2l_visible_ms", [])
        ),
        # The same answers at every other player of their session (tracker.at_others:
        # every worker got the same answers in the same order, one list each).
        "answer_to_leaderboard_top10_others_ms": at_others_summary(_per_answer(results)),
        "hops_ms": {
            hop: summary(x for r in results for x in r.get("hops_ms", {}).get(hop, []))
            for hop in HOPS
        },
        "hops_top10_ms": {
            hop: summary(x for r in results for x in r.get("top10_hops_ms", {}).get(hop, []))
            for hop in TOP10_HOPS
        },
        "answer_to_leaderboard": outcome,
        "leaderboard_events_delivered": delivered,
        "leaderboard_events_expected": expected,
        "leaderboard_delivery_pct": round(100.0 * delivered / expected, 3) if expected else None,
        "broadcasts": broadcasts,
        "answer_window_s": round(window, 2),
        "leaderboard_deliveries_per_s": round(delivered / window, 1) if window > 0 else None,
        "broadcasts_per_session_per_s": round(broadcasts / sessions / window, 2)
        if window > 0 and sessions
        else None,
        "fanout_spread_ms": summary(spreads),
        "question_fanout_lag_ms": summary(x for r in results for x in r["question_lag_ms"]),
        "events_received_by_name": received,
        "disconnects": sum(r["disconnects"] for r in results),
        "disconnect_reasons": reasons,
        "missing_examples": [s for r in results for s in r["short"]][:5],
        "errors": [e for r in results for e in r["errors"]][:10],
        "samples": {
            "answer_to_leaderboard_ms": [round(x, 2) for r in results for x in r["a2l_ms"]],
            "answer_rtt_ms": [round(x, 2) for r in results for x in r["rtt_ms"]],
        },
    }


def _per_answer(results: list[dict]) -> list[list[float]]:
    """Each top-10 answer's samples at the other players, from every worker."""
    lists = [r.get("a2l_visible_others_ms", []) for r in results]
    n = min((len(x) for x in lists), default=0)
    return [[v for x in lists for v in x[i]] for i in range(n)]


def _peak_per_second(times: list[float]) -> int | None:
    if not times:
        return None
    buckets: dict[int, int] = {}
    for t in times:
        buckets[int(t)] = buckets.get(int(t), 0) + 1
    return max(buckets.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="loadtests.runner",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("scenario", choices=list(scenarios.SCENARIOS))
    ap.add_argument("--url", default=os.environ.get("QUIZ_BASE_URL", "http://127.0.0.1:8080"))
    ap.add_argument("--quick", action="store_true", help="the reduced size, where defined")
    ap.add_argument("--players", type=int)
    ap.add_argument("--sessions", type=int)
    ap.add_argument("--questions", type=int)
    ap.add_argument("--time-limit", type=int)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args(argv)
    sc = scenarios.get(a.scenario, a.quick).with_size(
        a.players, a.sessions, a.questions, a.time_limit
    )

    async def go() -> dict:
        pool = await WorkerPool.start(a.workers)
        try:
            return await run_scenario(a.url, sc, pool)
        finally:
            await pool.close()

    result = asyncio.run(go())
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    shown = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(shown, indent=1))
    return 0 if result["leaderboard_delivery_pct"] == 100.0 else 1


if __name__ == "__main__":
    sys.exit(main())
