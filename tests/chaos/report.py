"""reports/chaos.md: one row per fault scenario, then the notes and any problems."""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

from tests.chaos.scenarios import Ctx, Result


def _s(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f} s"


def _during(r: Result) -> str:
    if r.accepted_during is None or r.fault_s is None:
        return "–"
    return f"{r.accepted_during} ({r.fault_s:.1f} s)"


def render(results: list[Result], *, full: bool) -> str:
    """The report as Markdown."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Fault tests (`just chaos`)",
        "",
        f"Run {now} on {platform.node()} ({'full sizes' if full else './dev test sizes'}),"
        " against an isolated stack started for the run (2 quiz, 2 socket.io, 1 consumer,"
        " 1 leaderboard process behind nginx; PostgreSQL, Redis, Kafka as local processes).",
        "",
        "Each scenario plays a real game with simulated players (httpx + python-socketio"
        " through nginx), injects the fault, heals it, and compares exactly: the answers"
        " each client saw accepted, the `answer` rows in PostgreSQL, the Redis board, the"
        " leaderboard HTTP API, the newest TOP_10 record in Kafka, and the newest"
        " `leaderboard` snapshot every client received.",
        "",
        "Columns: *during fault* = answers accepted between the fault and its repair (the"
        " fault's length in brackets); *sent* = answer POSTs including deliberate duplicates"
        " (retries after errors not included); *accepted* = distinct answers that got a 200;"
        " *stored* ="
        " rows in `answer`; *counted* = accepted answers of players whose Redis score equals"
        " the sum of their accepted points; *lb events* = `leaderboard` events received by"
        " all clients (all events in brackets); *5xx (retried)* = 5xx replies the clients"
        " saw and retried (all retries in brackets, 429 and transport errors included);"
        " *lag* = per accepted answer, from its 200 reply until its client held a"
        " leaderboard snapshot of that answer's version or newer (p50 / max): the answers"
        " accepted during the fault show how long the leaderboard lagged; *correct after* ="
        " seconds from the later of (fault healed, last answer accepted) until every client"
        " held the exact final board.",
        "",
        "| scenario | fault | during fault | sent | accepted | stored | counted"
        " | points accepted / on board"
        " | lb events (all) | reconnects | 5xx (retried) | answer→leaderboard lag p50 / max"
        " | correct after | result |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        v = r.verdict
        lines.append(
            f"| {r.name} | {r.fault} | {_during(r)} | {v.sent} | {v.accepted} | {v.stored}"
            f" | {v.counted}"
            f" | {v.accepted_points} / {v.board_points} | {v.leaderboard_events} ({v.events})"
            f" | {v.reconnects} | {v.server_errors} ({v.retried})"
            f" | {_s(v.p50_lag_s)} / {_s(v.max_lag_s)} | {_s(v.events_correct_s)}"
            f" | {'nothing lost' if v.ok else '**FAILED**'} |"
        )
    lines += ["", "## Notes per scenario", ""]
    for r in results:
        v = r.verdict
        lines.append(
            f"- **{r.name}** ({r.seconds:.0f} s): " + "; ".join(r.notes) + "; Redis board"
            f" correct {_s(v.redis_correct_s)} after the fault ended or the last answer"
        )
        if v.refused or v.undecided:
            lines.append(
                f"  - {v.refused} answers refused (409: deadline), {v.undecided} undecided"
                " (the client gave up)"
            )
        for p in v.problems[:20]:
            lines.append(f"  - problem: {p}")
        if len(v.problems) > 20:
            lines.append(f"  - ... and {len(v.problems) - 20} more problems")
    return "\n".join(lines) + "\n"


def write(
    path: Path, results: list[Result], *, full: bool, edit: Callable[[str], str] = str
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(edit(render(results, full=full)))


class Runs:
    """The scenarios one test module plays (``test_faults.py``, ``test_on_cluster.py``):
    each played, summed up in one line, and all written to QUIZ_CHAOS_REPORT at the
    module's end (``edit`` adapts the report's text to where it ran)."""

    def __init__(
        self,
        scenarios: Mapping[str, Callable[[Ctx], Awaitable[Result]]],
        edit: Callable[[str], str] = str,
    ):
        self.scenarios = scenarios
        self.edit = edit
        self.results: list[Result] = []

    def ctx(self, stack_dir: Path) -> Iterator[Ctx]:
        """The body of the module's ``ctx`` fixture."""
        c = Ctx.from_env(stack_dir)
        yield c
        out = os.environ.get("QUIZ_CHAOS_REPORT")
        if out and self.results:
            write(Path(out), self.results, full=c.full, edit=self.edit)

    async def play(self, ctx: Ctx, scenario: str) -> Result:
        result = await self.scenarios[scenario](ctx)
        self.results.append(result)
        print(f"\n{summary(result)}")
        return result


def summary(r: Result) -> str:
    v = r.verdict
    return (
        f"{r.name} ({r.seconds:.1f}s): sent {v.sent}, accepted {v.accepted},"
        f" stored {v.stored}, counted {v.counted}, lb events {v.leaderboard_events},"
        f" reconnects {v.reconnects}, retried {v.retried} (5xx {v.server_errors}),"
        f" lag p50 {v.p50_lag_s} max {v.max_lag_s}, correct after redis {v.redis_correct_s}"
        f" clients {v.events_correct_s}; {'; '.join(r.notes)}"
    )


def explain(r: Result) -> str:
    v = r.verdict
    return (
        f"{r.name}: sent {v.sent}, accepted {v.accepted}, stored {v.stored}, counted"
        f" {v.counted}; notes: {'; '.join(r.notes)}\nproblems:\n  " + "\n  ".join(v.problems[:30])
    )
