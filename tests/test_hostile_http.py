"""Property-based tests over every HTTP endpoint of the quiz and leaderboard
services, through nginx (IAM's are covered the same way in tests/test_iam_fuzz.py).

Schemathesis derives valid and invalid requests from each service's own OpenAPI
document (built from the app, so no server is needed to load it); each one is
sent as a host, as a player or anonymously, and half of the calls with a path id
get the id of a real session or quiz, so generated bodies reach deep code. No
request may cause a 5xx, and every error must be the JSON error shape
``{status_code, detail}``. Examples are bounded so the module runs in seconds.
"""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from services.leaderboard.app import app as leaderboard_app
from services.quiz.app import app as quiz_app
from tests.chaos.secrets import remember_tokens
from tests.support.api import Api

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# schemathesis gives every API operation a test of the same node id,
# which pytest-xdist would report once.
pytestmark = pytest.mark.alone


EXAMPLES = 15
quiz_schema = schemathesis.openapi.from_dict(quiz_app.openapi_schema.to_schema())
leaderboard_schema = schemathesis.openapi.from_dict(leaderboard_app.openapi_schema.to_schema())
for _schema in (quiz_schema, leaderboard_schema):
    _schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES
    )

WHO = ("host", "player", "anonymous")


@pytest.fixture(scope="module")
def world(api: Api, http: httpx.Client) -> dict[str, Any]:
    """Headers of a host, a joined player and nobody; a real quiz and session."""
    host = api.host()
    player = api.guest()
    remember_tokens(host)
    remember_tokens(player)
    headers = {"host": api.auth(host), "player": api.auth(player), "anonymous": {}}
    quiz = {
        "title": "fuzz target",
        "questions": [{"text": "q?", "choices": ["a", "b"], "answer": 1, "time_limit_s": 5}],
    }
    r = http.post("/api/quiz/quizzes", json=quiz, headers=headers["host"])
    assert r.status_code == 201, r.text
    quiz_id = r.json()["id"]
    r = http.post(
        "/api/quiz/sessions", json={"quiz_id": quiz_id, "mode": "live"}, headers=headers["host"]
    )
    assert r.status_code == 201, r.text
    session_id = r.json()["id"]
    r = http.post(
        "/api/quiz/sessions/join", json={"session_id": session_id}, headers=headers["player"]
    )
    assert r.status_code == 200, r.text
    return {
        "headers": headers,
        "ids": {"quiz_id": quiz_id, "session_id": session_id, "user_id": player["user"]["id"]},
        "session": requests.Session(),
    }


def _seed(case: Any) -> int:
    """A stable number per generated case (hypothesis replays it the same way)."""
    return zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())


def _other_spelling(session_id: str, seed: int) -> str:
    """The same UUID spelled otherwise (upper case, no dashes, braces, urn:uuid:)."""
    u = uuid.UUID(session_id)
    return [session_id.upper(), u.hex, "{" + session_id + "}", u.urn][seed % 4]


def _aim_at_real_ids(case: Any, ids: dict[str, str]) -> None:
    """On half of the cases, path ids name the real quiz/session/player (on one in
    eight, the real session id in another spelling, which must be unknown, not 5xx)."""
    if not case.path_parameters or _seed(case) % 2:
        return
    for name in case.path_parameters:
        if name in ("id", "session_id"):
            case.path_parameters[name] = (
                _other_spelling(ids["session_id"], _seed(case) // 8)
                if _seed(case) % 8 == 2
                else ids["session_id"]
            )
        elif name == "quiz_id":
            case.path_parameters[name] = ids["quiz_id"]
        elif name == "user_id":
            case.path_parameters[name] = ids["user_id"]


def _header(response: Any, name: str) -> str:
    """A header of schemathesis' Response (a dict of lists, any case)."""
    for k, v in response.headers.items():
        if k.lower() == name:
            return v[0] if isinstance(v, list) and v else str(v)
    return ""


def _check(case: Any, world: dict[str, Any], base_url: str) -> None:
    _aim_at_real_ids(case, world["ids"])
    who = WHO[_seed(case) % 3]
    response = case.call(
        base_url=base_url, session=world["session"], headers=world["headers"][who], timeout=15
    )
    where = f"[{who}] {case.method} {case.formatted_path} {response.status_code}"
    text = response.content.decode(errors="replace")
    assert response.status_code < 500, f"{where}: {text[:300]} (body {case.body!r:.200})"
    if response.status_code >= 400:
        assert _header(response, "content-type").startswith("application/json"), (where, text)
        body = json.loads(text)
        assert isinstance(body, dict), (where, body)
        assert body.get("status_code") == response.status_code and body.get("detail"), (where, body)


@pytest.mark.stack
@quiz_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_quiz_endpoints_never_answer_5xx_and_errors_are_json(case, world, base_url) -> None:  # type: ignore[no-untyped-def]
    _check(case, world, base_url)


@pytest.mark.stack
@leaderboard_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_leaderboard_endpoints_never_answer_5xx_and_errors_are_json(case, world, base_url) -> None:  # type: ignore[no-untyped-def]
    _check(case, world, base_url)
