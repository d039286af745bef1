"""PostgreSQL down: the quiz service answers 503 (JSON, Retry-After) instead of
failing or hanging, and serves again once PostgreSQL is back."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest

from infra.stack import read_layout, read_pids
from tests.support.api import Api, answer
from tests.support.game import Quiz
from tests.support.stack import stack_cmd, wait_until

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it stops PostgreSQL.
pytestmark = [pytest.mark.stack, pytest.mark.alone]


def stop_postgres(stack_dir: Path) -> None:
    """Fast shutdown (SIGINT) of the stack's PostgreSQL, so it can start again later
    (after SIGKILL its children and lock file would block the restart)."""
    os.killpg(read_pids(stack_dir)["postgres"], signal.SIGINT)  # its process group
    port = read_layout(stack_dir).pg_port

    def closed() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) != 0

    wait_until(closed, timeout_s=15)


def test_postgres_down_is_503_then_answers_resume(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    quiz = Quiz(api, 2, limit_s=60)
    sid, player, qid = quiz.self_paced_player()
    stop_postgres(stack_dir)
    try:
        r = answer(http, player, sid, qid, quiz.answer_of(0))
        assert r.status_code == 503, r.text
        assert r.json()["status_code"] == 503 and r.headers.get("retry-after")
    finally:
        stack_cmd(stack_dir, "restart", "postgres")

    def accepted() -> httpx.Response | None:
        r = answer(http, player, sid, qid, quiz.answer_of(0))
        return r if r.status_code == 200 else None

    r = wait_until(accepted, timeout_s=15, every_s=0.2)
    assert r.json()["correct"] is True
