"""The lean answer route (services/quiz/answer_route.py) answers exactly as Litestar.

In-process: which requests it takes and which it leaves to Litestar (the body
replayed whole). On the stack: every case answered once the long way (a token the
quiz process has not verified yet goes through Litestar) and once the short way (the
same token, now verified) gets the same status, content type, Retry-After and body
bytes.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from services.common.auth import Caller, verifier
from services.quiz import answer_route
from services.quiz.answer_route import cached_caller, error_body, lean_answers, session_of
from services.quiz.errors import Conflict, Invalid, NotFound, Unavailable
from tests.conftest import Api
from tests.support.api import join
from tests.support.game import Quiz

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it counts a process-wide metric exactly.
pytestmark = pytest.mark.alone

PATH = "/api/quiz/sessions/{sid}/answers"


def _scope(path: str, method: str = "POST", auth: list[bytes] | None = None) -> dict[str, Any]:
    headers = [(b"authorization", a) for a in (auth or [])]
    return {"type": "http", "method": method, "path": path, "headers": headers}


def test_only_answer_posts_are_taken() -> None:
    assert session_of(_scope(PATH.format(sid="abc"))) == "abc"
    assert session_of(_scope(PATH.format(sid="abc"), method="GET")) is None
    assert session_of(_scope("/api/quiz/sessions/join")) is None
    assert session_of(_scope("/api/quiz/sessions/a/b/answers")) is None
    assert session_of(_scope("/api/quiz/sessions//answers")) is None
    assert session_of(_scope("/api/quiz/sessions/abc/question")) is None
    assert session_of({"type": "websocket", "path": PATH.format(sid="a")}) is None


def test_only_a_token_this_process_verified_is_taken() -> None:
    token = f"lean-test-{uuid.uuid4()}"
    caller = Caller(user_id=str(uuid.uuid4()), role="player", nickname="n")
    path = PATH.format(sid="abc")
    assert cached_caller(_scope(path, auth=[f"Bearer {token}".encode()])) is None
    verifier._cache[token] = (caller, time.time() + 60)
    expired = f"lean-expired-{uuid.uuid4()}"
    verifier._cache[expired] = (caller, time.time() - 1)
    try:
        assert cached_caller(_scope(path, auth=[f"Bearer {token}".encode()])) == caller
        assert cached_caller(_scope(path, auth=[f"bearer  {token} ".encode()])) == caller
        assert cached_caller(_scope(path, auth=[f"Basic {token}".encode()])) is None
        assert cached_caller(_scope(path, auth=[f"Bearer {expired}".encode()])) is None
        twice = [f"Bearer {token}".encode()] * 2  # two headers: Litestar judges
        assert cached_caller(_scope(path, auth=twice)) is None
        assert cached_caller(_scope(path)) is None
    finally:
        del verifier._cache[token], verifier._cache[expired]


def test_scoring_errors_have_the_controllers_shape() -> None:
    assert error_body(NotFound("No such session")) == (
        404,
        b'{"status_code":404,"detail":"No such session"}',
        False,
    )
    assert error_body(Conflict("Past the deadline"))[:2] == (
        409,
        b'{"status_code":409,"detail":"Past the deadline"}',
    )
    status, body, _ = error_body(Invalid("bad", field="choice"))
    assert status == 422 and msgspec.json.decode(body) == {
        "status_code": 422,
        "detail": "bad (field `choice`)",
        "extra": [{"key": "choice", "message": "bad"}],
    }
    assert error_body(Unavailable("retry"))[2] is True
    assert error_body(ConnectionRefusedError())[:2] == (
        503,
        b'{"status_code":503,"detail":"Database unavailable, retry later"}',
    )
    assert error_body(RuntimeError("bug"))[0] == 500


class _Inner:
    """Stands in for Litestar's handler: records what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"litestar"})


def _call(app: Any, scope: dict[str, Any], parts: list[bytes]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        queue = [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return queue.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    return asyncio.run(run())


def test_what_the_lean_route_does_not_take_reaches_litestar_whole() -> None:
    token = f"lean-test-{uuid.uuid4()}"
    verifier._cache[token] = (Caller(str(uuid.uuid4()), "player", "n"), time.time() + 60)
    inner = _Inner()
    app = lean_answers(inner)
    auth = [f"Bearer {token}".encode()]
    path = PATH.format(sid="NOT-A-UUID")
    try:
        for parts in (
            [b'{"question_id": "q", ', b'"choice": 9}'],  # out of range: 422 from Litestar
            [b'{"question_id": "q", "choice": "1"}'],  # not strictly an integer
            [b'{"question_id": "q", "choice": 1, "x": 0}'],  # unknown field
            [b'{"question_id": "q", "choice": 1'],  # malformed
            [b""],
        ):
            sent = _call(app, _scope(path, auth=auth), parts)
            assert sent[0]["status"] == 299 and inner.bodies[-1] == b"".join(parts)
        # Taken: well formed, verified token; the session id is unknown (404, no DB).
        sent = _call(app, _scope(path, auth=auth), [b'{"question_id": "q", "choice": 1}'])
        assert sent[0]["status"] == 404
        assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"
        assert sent[1]["body"] == b'{"status_code":404,"detail":"No such session"}'
        assert len(inner.bodies) == 5
        # No verified token: Litestar (which verifies), body untouched.
        sent = _call(app, _scope(path), [b'{"question_id": "q", "choice": 1}'])
        assert sent[0]["status"] == 299 and len(inner.bodies) == 6
    finally:
        del verifier._cache[token]


def test_the_quiz_app_has_the_lean_route_in_front() -> None:
    from services.quiz.app import app

    assert app.asgi_handler.__qualname__.startswith(answer_route.lean_answers.__qualname__)


# --------------------------------------------------------------------------- the stack


def _ports(stack_dir: Path) -> list[int]:
    return msgspec.json.decode((stack_dir / "stack.json").read_bytes())["layout"]["quiz_ports"]


def _short_way(stack_dir: Path) -> float:
    """Answers the quiz processes took the short way so far (their metrics)."""
    ports = msgspec.json.decode((stack_dir / "stack.json").read_bytes())["layout"]["metrics_ports"]
    total = 0.0
    for name, port in ports.items():
        if name.startswith("quiz-"):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            m = re.search(r"^quizrt_answers_short_way_total (\S+)$", text, re.M)
            total += float(m.group(1)) if m else 0.0
    return total


def _seen(r: httpx.Response) -> tuple[int, str | None, str | None, bytes]:
    return r.status_code, r.headers.get("content-type"), r.headers.get("retry-after"), r.content


@pytest.mark.stack
def test_each_answer_gets_the_same_reply_the_short_way_as_through_litestar(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    first, other = _ports(stack_dir)[:2]
    quiz = Quiz(api, 2, limit_s=30)
    sid = quiz.open_session("live")["id"]
    qid, closed = quiz.question_ids[0], quiz.question_ids[1]

    def player(joined: bool = True) -> dict:
        p = api.guest()
        if joined:  # joined on the other process: ``first`` has not verified the token
            with httpx.Client(base_url=f"http://127.0.0.1:{other}", timeout=20) as c:
                assert join(c, p, session_id=sid).status_code == 200
        return p

    good = {"question_id": qid, "choice": quiz.answer_of(0)}
    cases: list[tuple[str, dict, str, bytes | dict]] = [
        ("valid", player(), sid, good),
        ("wrong", player(), sid, {"question_id": qid, "choice": (quiz.answer_of(0) + 1) % 3}),
        ("not joined", player(joined=False), sid, good),
        ("unknown session", player(), str(uuid.uuid4()), good),
        ("other spelling", player(), sid.upper(), good),
        ("not open", player(), sid, {"question_id": closed, "choice": 0}),
        ("unknown question", player(), sid, {"question_id": "nope", "choice": 0}),
        ("out of range", player(), sid, {"question_id": qid, "choice": 9}),
        ("unknown field", player(), sid, {**good, "extra": 1}),
        ("string choice", player(), sid, {"question_id": qid, "choice": "1"}),
        ("malformed", player(), sid, b'{"question_id": "q", "choice": 1'),
    ]
    quiz.advance(sid)
    before = _short_way(stack_dir)
    with httpx.Client(base_url=f"http://127.0.0.1:{first}", timeout=20) as c:
        for name, p, session, body in cases:
            kw: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
            kw["headers"] = {**Api.auth(p), "content-type": "application/json"}
            path = PATH.format(sid=session)
            litestar = c.post(path, **kw)  # the token is new to this process
            lean = c.post(path, **kw)  # now verified here: the short way when well formed
            assert litestar.status_code < 500, (name, litestar.text)
            assert _seen(lean) == _seen(litestar), name
        # No token and a bad token: Litestar's 401 either way.
        bad = c.post(PATH.format(sid=sid), json=good, headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401 and bad.json()["status_code"] == 401
    # Only the second copy of each well-formed answer went the short way.
    assert _short_way(stack_dir) - before == 7
