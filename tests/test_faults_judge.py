"""The fault harness's judge can fail: its board comparison and lag measure, on
made-up data (no stack needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from tests.chaos.game import Game
from tests.chaos.player import Snapshot
from tests.chaos.truth import Verdict, answer_lags, board_problems

EXPECTED = {"a": 300, "b": 200, "c": 100, "d": 0}


def test_an_exact_board_passes() -> None:
    assert board_problems("redis", dict(EXPECTED), 4, EXPECTED) == []


def test_a_top_n_passes_with_ties_at_the_cut() -> None:
    expected = {"a": 300, "b": 100, "c": 100}
    assert board_problems("top2", {"a": 300, "c": 100}, 3, expected, top=2) == []
    assert board_problems("top2", {"a": 300, "b": 100}, 3, expected, top=2) == []


def test_every_kind_of_disagreement_is_caught() -> None:
    assert board_problems("x", {**EXPECTED, "a": 301}, 4, EXPECTED)  # counted twice
    assert board_problems("x", {**EXPECTED, "b": 0}, 4, EXPECTED)  # an answer lost
    assert board_problems("x", {**EXPECTED, "zz": 5}, 4, EXPECTED)  # a stranger
    assert board_problems("x", dict(EXPECTED), 5, EXPECTED)  # wrong player count
    assert board_problems("x", {"a": 300, "c": 100}, 4, EXPECTED, top=2)  # top-2 skipped b
    assert board_problems("x", {"a": 300}, 4, EXPECTED)  # fewer entries than players


def _player(accepted: dict, at: dict, snaps: list[tuple[float, int]]) -> SimpleNamespace:
    return SimpleNamespace(
        accepted=accepted,
        accepted_at=at,
        snapshots=[
            Snapshot(t=t, version=v, players=1, scores={}, source="event") for t, v in snaps
        ],
    )


def test_lag_is_measured_to_the_first_snapshot_of_that_version_or_newer() -> None:
    p = _player(
        {"q1": {"version": 10}, "q2": {"version": 12}, "q3": {"version": 0}},
        {"q1": 100.0, "q2": 101.0, "q3": 102.0},
        [(99.0, 9), (100.5, 11), (104.0, 13)],
    )
    lags, never = answer_lags(cast(Game, SimpleNamespace(players=[p])))
    assert sorted(lags) == [0.5, 3.0] and never == 0


def test_an_answer_no_snapshot_reflects_is_counted() -> None:
    p = _player({"q1": {"version": 50}}, {"q1": 1.0}, [(2.0, 49)])
    assert answer_lags(cast(Game, SimpleNamespace(players=[p]))) == ([], 1)


def test_absorb_adds_counts_and_labels_problems() -> None:
    v, w = Verdict(accepted=2, problems=["x"]), Verdict(accepted=3, problems=["y"], max_lag_s=1.5)
    v.absorb(w, "live")
    assert v.accepted == 5 and v.problems == ["x", "live: y"] and v.max_lag_s == 1.5
