"""The scoring formula as a pure function: exact numbers and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.quiz.scoring import score_answer, streak_bonus, time_points


@pytest.mark.parametrize(
    ("elapsed_ms", "limit_s", "points", "expected"),
    [
        (0, 20, 1000, 1000),
        (499, 20, 1000, 1000),  # under 0.5 s: full points
        (500, 20, 1000, 988),  # 1000 * (1 - 0.025 / 2) = 987.5 -> 988 (half up)
        (10_000, 20, 1000, 750),
        (20_000, 20, 1000, 500),
        (25_000, 20, 1000, 500),  # past the limit (grace): clamped to the limit
        (-40, 20, 1000, 1000),  # clock noise: clamped to 0
        (2_500, 5, 1000, 750),
        (1_000, 5, 1000, 900),
        (3_000, 20, 1000, 925),
        (1_234, 20, 1000, 969),  # 969.15
        (7_000, 20, 1000, 825),
        (6_000, 20, 999, 849),  # 849.15
        (5_000, 20, 10, 9),  # 8.75 -> 9
        (6_000, 20, 10, 9),  # 8.5 -> 9: half rounds up, not to even (round() would say 8)
        (10_000, 20, 1, 1),  # 0.75 -> 1
        (20_000, 20, 1, 1),  # 0.5 -> 1
        (19_000, 20, 0, 0),
    ],
)
def test_time_points_exact(elapsed_ms: int, limit_s: int, points: int, expected: int) -> None:
    assert time_points(points, elapsed_ms, limit_s) == expected


def test_streak_bonus_steps_and_cap() -> None:
    assert [streak_bonus(n) for n in range(8)] == [0, 100, 200, 300, 400, 500, 500, 500]


def test_score_answer_correct_wrong_and_streaks() -> None:
    assert score_answer(True, 0, 20, 1000, 0) == (1000, 1)
    assert score_answer(True, 10_000, 20, 1000, 2) == (950, 3)
    assert score_answer(True, 20_000, 20, 1000, 9) == (1000, 10)  # 500 + capped 500
    assert score_answer(False, 0, 20, 1000, 4) == (0, 0)  # a wrong answer ends the streak


def test_a_run_of_answers() -> None:
    """Five answers of one player: correct x3, wrong, correct."""
    streak, total = 0, 0
    for correct, elapsed in [(True, 300), (True, 4_000), (True, 20_000), (False, 1), (True, 0)]:
        pts, streak = score_answer(correct, elapsed, 20, 1000, streak)
        total += pts
    # 1000 + (900 + 100) + (500 + 200) + 0 + 1000
    assert total == 3700
    assert streak == 1


limits = st.integers(min_value=5, max_value=120)
points_st = st.integers(min_value=0, max_value=10_000)
elapsed_st = st.integers(min_value=-1_000, max_value=130_000)
streaks = st.integers(min_value=0, max_value=200)


@given(limits, points_st, elapsed_st, elapsed_st, streaks)
def test_faster_never_scores_less(limit: int, points: int, a: int, b: int, streak: int) -> None:
    fast, slow = min(a, b), max(a, b)
    assert (
        score_answer(True, fast, limit, points, streak)[0]
        >= score_answer(True, slow, limit, points, streak)[0]
    )


@given(st.booleans(), limits, points_st, elapsed_st, streaks)
def test_bounds(correct: bool, limit: int, points: int, elapsed: int, streak: int) -> None:
    awarded, after = score_answer(correct, elapsed, limit, points, streak)
    assert 0 <= awarded <= points + 500
    if correct:
        assert awarded >= (points + 1) // 2  # never below half the points
        assert after == streak + 1
    else:
        assert (awarded, after) == (0, 0)


@given(limits, points_st, st.integers(min_value=500, max_value=120_000))
def test_matches_the_documented_formula(limit: int, points: int, elapsed: int) -> None:
    """Equal to round-half-up of the real-number formula (exact with fractions)."""
    from fractions import Fraction

    e = min(elapsed, limit * 1000)
    exact = points * (1 - Fraction(e, 1000) / limit / 2)
    assert time_points(points, elapsed, limit) == int(exact + Fraction(1, 2))
