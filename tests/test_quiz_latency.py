"""How long one answer takes through nginx (the hot path), measured, printed, and
held to a loose bound: 200 sequential answers on one keep-alive connection."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from tests.conftest import Api
from tests.test_quiz_support import Quiz, answer, join, question

pytestmark = pytest.mark.stack


def test_answer_latency_through_nginx(http: httpx.Client, api: Api) -> None:
    quiz = Quiz(api, 100, limit_s=60)
    sid = quiz.open_session("self_paced")["id"]
    players = [api.guest(), api.guest()]
    took_ms = []
    for p in players:
        assert join(http, p, session_id=sid).status_code == 200
        for i in range(100):
            qid = question(http, p, sid).json()["question_id"]
            t0 = time.perf_counter()
            r = answer(http, p, sid, qid, quiz.answer_of(i))
            took_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
    took_ms.sort()
    p50 = statistics.median(took_ms)
    p95 = took_ms[int(len(took_ms) * 0.95)]
    print(
        f"\nanswer through nginx, {len(took_ms)} sequential: p50 {p50:.1f} ms,"
        f" p95 {p95:.1f} ms, max {took_ms[-1]:.1f} ms"
    )
    assert p50 < 250  # a sanity bound on a shared 2-core machine, not a target
