"""How long one answer takes through nginx (the hot path), measured, printed, and
held to a loose bound: 100 sequential answers on one keep-alive connection, next to
a baseline of 100 simple authenticated reads (the quiz detail) in the same run, so a
busy machine shows in both numbers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import httpx
import pytest

from tests.support.api import Api, answer, join, question
from tests.support.game import Quiz

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it asserts a latency.
pytestmark = [pytest.mark.stack, pytest.mark.alone]


def percentiles(took_ms: list[float]) -> str:
    took_ms = sorted(took_ms)
    p95 = took_ms[int(len(took_ms) * 0.95)]
    return f"p50 {statistics.median(took_ms):.1f} ms, p95 {p95:.1f} ms, max {took_ms[-1]:.1f} ms"


def timed(call: Callable[[], httpx.Response]) -> float:
    t0 = time.perf_counter()
    r = call()
    took = (time.perf_counter() - t0) * 1000
    assert r.status_code == 200, r.text
    return took


def test_answer_latency_through_nginx(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 50, limit_s=60)
    sid = quiz.open_session("self_paced")["id"]
    answers_ms: list[float] = []
    for p in (api.guest(), api.guest()):
        assert join(http, p, session_id=sid).status_code == 200
        for i in range(50):
            qid = question(http, p, sid).json()["question_id"]
            answers_ms.append(timed(partial(answer, http, p, sid, qid, quiz.answer_of(i))))
    baseline_ms = [
        timed(lambda: http.get(f"/api/quiz/quizzes/{quiz.id}", headers=quiz.auth))
        for _ in range(100)
    ]
    print(
        f"\nanswer through nginx, {len(answers_ms)} sequential: {percentiles(answers_ms)}"
        f"\nbaseline GET quiz detail, {len(baseline_ms)}: {percentiles(baseline_ms)}"
    )
    assert statistics.median(answers_ms) < 250  # sanity on a shared 2-core machine, not a target
