"""The bench report's latency budget per hop: which hop it blames (no server)."""

from __future__ import annotations

from loadtests.report import a2l_budget_ms, hop_lines, hop_verdict


def scenario(a2l_p99: float, **p99: float) -> dict:
    return {
        "answer_to_leaderboard_ms": {"p99": a2l_p99},
        "hops_ms": {h: {"p50": v / 2, "p99": v} for h, v in p99.items()},
    }


def test_the_hop_with_the_largest_p99_breaks_the_budget_only_when_it_is_exceeded() -> None:
    r = scenario(240, ack_read=20, read_emit=30, emit_client=180)
    assert "emitted -> at the client" in hop_verdict(r, 100)
    assert hop_verdict(r, 100).startswith("**")
    assert hop_verdict(r, 500).startswith("within budget")
    assert hop_verdict(scenario(50), 100) == "no traces"


def test_budgets_and_the_table() -> None:
    assert a2l_budget_ms("many-rooms", {}) == 100
    assert a2l_budget_ms("stadium", {"bare_emit_last_client_p50_ms": 60}) == 90
    assert a2l_budget_ms("classroom", {}) is None
    result = {"scenarios": {"many-rooms": scenario(240, read_emit=30, emit_client=180)}}
    table = "\n".join(hop_lines(result, {"many-rooms": {}}))
    assert "| many-rooms | n/a / n/a |" in table  # quiz hops not recorded
    assert "15.0 / 30" in table and "240 / 100" in table


def test_the_top_10_answers_get_their_own_row_and_verdict() -> None:
    r = scenario(240, read_emit=130, emit_client=60)
    r["answer_to_leaderboard_top10_ms"] = {"p50": 40, "p99": 120}
    r["hops_top10_ms"] = {
        "send_arrive": {"p50": 2, "p99": 9, "count": 50},
        "read_emit": {"p50": 4, "p99": 20, "count": 50},
        "emit_client": {"p50": 30, "p99": 70, "count": 50},
        "send_emit": {"p50": 10, "p99": 90, "count": 50},  # not a hop: never blamed
    }
    assert hop_verdict(r, 100).startswith("**read -> emitted** (130")
    assert hop_verdict(r, 100, top10=True) == "**emitted -> at the client** (70 of 120 ms)"
    table = "\n".join(hop_lines({"scenarios": {"many-rooms": r}}, {"many-rooms": {}}))
    row = next(x for x in table.splitlines() if x.startswith("| many-rooms, top-10"))
    assert row.startswith("| many-rooms, top-10 answers (50 traced) | 2 / 9 |")
    assert "| 30 / 70 | 10 / 90 | 40 / 120 | 120 / 100 |" in row
    # No traced top-10 answer: no row.
    del r["hops_top10_ms"]
    assert "| m, top-10" not in "\n".join(hop_lines({"scenarios": {"m": r}}, {"m": {}}))
