"""Scoring of one answer: a pure function of the server's measurements.

The formula (quoted in the README and in ``docs/protocol.md``):

    base  = points                                        if elapsed_ms < 500
          = round_half_up(points * (1 - (elapsed_s / time_limit_s) / 2))   otherwise
    bonus = min(100 * streak_before, 500)
    correct answer: points_awarded = base + bonus, streak_after = streak_before + 1
    wrong or missing answer: points_awarded = 0, streak_after = 0

``elapsed_s`` is clamped to ``[0, time_limit_s]`` (an answer accepted in the short
network grace after the deadline earns what an answer at the deadline earns), so a
correct answer always earns between ``points / 2`` and ``points`` before the bonus.
``streak_before`` is the number of correct answers in a row immediately before this
question (so the n-th correct answer in a row earns ``min(100 * (n - 1), 500)``);
the caller passes 0 when the player skipped the previous question.

The arithmetic is exact integer arithmetic on milliseconds, rounding halves up, so
no float or banker's rounding can move a point:

    base = (2 * points * (2000 * T - e) + 2000 * T) // (2 * 2000 * T)

with ``T = time_limit_s`` and ``e = elapsed_ms``.
"""

from __future__ import annotations

FULL_POINTS_UNDER_MS = 500
STREAK_STEP = 100
STREAK_CAP = 500


def streak_bonus(streak_before: int) -> int:
    """Bonus for a correct answer after ``streak_before`` correct answers in a row."""
    return min(STREAK_STEP * max(streak_before, 0), STREAK_CAP)


def time_points(points: int, elapsed_ms: int, time_limit_s: int) -> int:
    """Points of a correct answer before the streak bonus (see the module docstring)."""
    if time_limit_s <= 0:
        raise ValueError("time_limit_s must be positive")
    limit_ms = time_limit_s * 1000
    elapsed = min(max(elapsed_ms, 0), limit_ms)
    if elapsed < FULL_POINTS_UNDER_MS:
        return points
    # points * (1 - elapsed / (2 * limit)) = points * (2 * limit - elapsed) / (2 * limit),
    # rounded half up: floor(x + 1/2) = (2 * num + den) // (2 * den).
    num = points * (2 * limit_ms - elapsed)
    den = 2 * limit_ms
    return (2 * num + den) // (2 * den)


def score_answer(
    correct: bool, elapsed_ms: int, time_limit_s: int, points: int, streak_before: int
) -> tuple[int, int]:
    """(points_awarded, streak_after) of one answer.

    ``elapsed_ms``: server time from the question opening (live) or being handed to
    the player (self-paced) to the answer's arrival. ``points``: the question's
    points (0..10,000). ``streak_before``: correct answers in a row just before.
    """
    if not correct:
        return 0, 0
    return time_points(points, elapsed_ms, time_limit_s) + streak_bonus(
        streak_before
    ), streak_before + 1
