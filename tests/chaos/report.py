"""reports/chaos.md: one row per fault scenario, then the notes and any problems."""

from __future__ import annotations

import datetime as dt
import platform
from pathlib import Path

from tests.chaos.scenarios import Result


def _s(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f} s"


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
        " leaderboard HTTP API, and the newest `leaderboard` snapshot every client received.",
        "",
        "Columns: *sent* = answer POSTs including deliberate duplicates (retries after"
        " errors not included: see *retried*); *accepted* = distinct answers that got a 200;"
        " *stored* = rows in `answer`; *counted* = accepted answers of players whose Redis"
        " score equals the sum of their accepted points; *lb events* = `leaderboard` events"
        " received by all clients; *correct after* = seconds from the later of (fault healed,"
        " last answer accepted) until Redis / the last client showed the right board.",
        "",
        "| scenario | fault | sent | accepted | stored | counted | points accepted / on board"
        " | lb events (all events) | reconnects | retried (5xx) | Redis correct after"
        " | clients correct after | result |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in results:
        v = r.verdict
        lines.append(
            f"| {r.name} | {r.fault} | {v.sent} | {v.accepted} | {v.stored} | {v.counted}"
            f" | {v.accepted_points} / {v.board_points} | {v.leaderboard_events} ({v.events})"
            f" | {v.reconnects} | {v.retried} ({v.server_errors}) | {_s(v.redis_correct_s)}"
            f" | {_s(v.events_correct_s)} | {'nothing lost' if v.ok else '**FAILED**'} |"
        )
    lines += ["", "## Notes per scenario", ""]
    for r in results:
        v = r.verdict
        lines.append(f"- **{r.name}** ({r.seconds:.0f} s): " + "; ".join(r.notes))
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


def write(path: Path, results: list[Result], *, full: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results, full=full))
