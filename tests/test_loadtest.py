"""The load tools against the real stack: a tiny classroom played to the end.

Behaviour, not speed: every player connects, every answer is accepted, every
answer's leaderboard update reaches its player, and every player receives every
snapshot its session broadcast (``loadtests.tracker`` says what that means).
"""

from __future__ import annotations

import dataclasses

import pytest

from loadtests import scenarios
from loadtests.pool import WorkerPool
from loadtests.runner import run_scenario

pytestmark = pytest.mark.stack

PLAYERS = 5
QUESTIONS = 2


@pytest.mark.timeout(90)
async def test_tiny_classroom_every_player_gets_every_leaderboard_update(base_url: str) -> None:
    sc = dataclasses.replace(
        scenarios.get("classroom").with_size(players=PLAYERS, questions=QUESTIONS, time_limit_s=5),
        answer_after_s=(0.2, 2.5),
        p_correct=1.0,
    )
    pool = await WorkerPool.start(1)
    try:
        r = await run_scenario(base_url, sc, pool, say=print)
    finally:
        await pool.close()

    assert r["players_connected"] == PLAYERS, r["errors"]
    assert r["answers_accepted"] == PLAYERS * QUESTIONS, (r["answer_status"], r["errors"])
    outcome = r["answer_to_leaderboard"]
    # Every answer is correct and the room holds 5 players, so every answer is timed
    # (by version, or by score in the top 10) and none may be missing.
    assert outcome["missing"] == 0, (outcome, r["missing_examples"])
    assert outcome["delivered"] == PLAYERS * QUESTIONS, outcome
    assert r["answer_to_leaderboard_ms"]["count"] == PLAYERS * QUESTIONS
    assert r["broadcasts"] >= 1
    assert r["leaderboard_events_expected"] == PLAYERS * r["broadcasts"]
    assert r["leaderboard_events_delivered"] == r["leaderboard_events_expected"], r[
        "missing_examples"
    ]
    assert r["disconnects"] == 0, r["disconnect_reasons"]
    assert r["question_fanout_lag_ms"]["count"] == PLAYERS * QUESTIONS
