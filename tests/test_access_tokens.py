"""Tokens and roles across services, through nginx: every hostile token is refused
by the quiz service, the leaderboard service and the socket.io tier (not only by
IAM); a rotated refresh token cannot be reused; a player cannot make host calls;
nobody reads or joins a session they are not part of.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import socketio

from tests.chaos.game import Game, Plan, started
from tests.support.tokens import claims, hostile_tokens, keyring, sign

pytestmark = pytest.mark.stack


@pytest_asyncio.fixture(scope="module")
async def game(base_url: str) -> AsyncIterator[Game]:
    """A live session in the lobby with two joined players (no sockets)."""
    async with started(base_url, Plan(players=2, questions=2, mode="live", time_limit_s=5)) as g:
        yield g


@pytest_asyncio.fixture(scope="module")
async def other_game(base_url: str) -> AsyncIterator[Game]:
    """A second session with its own host and player."""
    async with started(base_url, Plan(players=1, questions=1, mode="live", time_limit_s=5)) as g:
        yield g


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _calls(g: Game) -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of calls that need a valid token, one per service area."""
    sid, uid = g.session_id, g.players[0].user_id
    return [
        ("POST", "/api/quiz/sessions/join", {"session_id": sid}),
        ("GET", f"/api/quiz/sessions/{sid}/question", None),
        ("POST", f"/api/quiz/sessions/{sid}/answers", {"question_id": "q0", "choice": 0}),
        ("POST", f"/api/quiz/sessions/{sid}/advance", None),
        ("GET", f"/api/quiz/sessions/{sid}/results", None),
        ("POST", "/api/quiz/sessions", {"quiz_id": g.quiz_id, "mode": "live"}),
        ("GET", f"/api/leaderboard/sessions/{sid}/top", None),
        ("GET", f"/api/leaderboard/sessions/{sid}/players/{uid}", None),
    ]


def _assert_json_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}"
    )
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert body["status_code"] == r.status_code and body["detail"], body


async def _sio_refused(base_url: str, token: str | None) -> bool:
    """True when the socket.io tier refuses a connection with this token."""
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(
            base_url,
            auth={"token": token} if token is not None else None,
            transports=["websocket"],
            wait_timeout=5,
        )
    except socketio.exceptions.ConnectionError:
        return True
    await client.disconnect()
    return False


async def test_minted_tokens_work_so_the_refusals_below_mean_something(
    game: Game, stack_dir: Path, base_url: str
) -> None:
    """Control: a token signed with the real key and the right claims is accepted."""
    ring = keyring(stack_dir)
    p = game.players[0]
    token = sign(ring, claims(p.user_id, nickname=p.nickname))
    r = await game.http.get(
        f"/api/leaderboard/sessions/{game.session_id}/top", headers=_bearer(token)
    )
    assert r.status_code == 200, r.text
    r = await game.http.post(
        "/api/quiz/sessions/join", json={"session_id": game.session_id}, headers=_bearer(token)
    )
    assert r.status_code == 200, r.text
    assert not await _sio_refused(base_url, token)


async def test_hostile_tokens_are_refused_by_every_service(
    game: Game, stack_dir: Path, base_url: str
) -> None:
    ring = keyring(stack_dir)
    p = game.players[0]
    tokens = hostile_tokens(ring, p.tokens["access_token"], p.user_id)
    failures = []
    for name, token in tokens.items():
        for method, path, body in _calls(game):
            r = await game.http.request(method, path, json=body, headers=_bearer(token))
            if r.status_code != 401:
                failures.append(f"{name}: {method} {path} -> {r.status_code} {r.text[:120]}")
                continue
            _assert_json_error(r, 401)
        if not await _sio_refused(base_url, token):
            failures.append(f"{name}: socket.io connect accepted")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Basic dXNlcjpwYXNz", "Token abc", "bearer not-a-token"],
)
async def test_missing_or_malformed_authorization_is_401_json(game: Game, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path, body in _calls(game):
        r = await game.http.request(method, path, json=body, headers=headers)
        _assert_json_error(r, 401)


async def test_socket_without_token_is_refused(base_url: str) -> None:
    assert await _sio_refused(base_url, None)
    assert await _sio_refused(base_url, "")


async def test_rotated_refresh_token_cannot_be_reused(game: Game) -> None:
    http = game.http
    guest = (await http.post("/api/iam/guests", json={"nickname": "rotator"})).json()
    first = guest["refresh_token"]
    r = await http.post("/api/iam/token/refresh", json={"refresh_token": first})
    assert r.status_code == 200, r.text
    second = r.json()
    # Reusing the rotated token is refused and revokes the whole family.
    reuse = await http.post("/api/iam/token/refresh", json={"refresh_token": first})
    _assert_json_error(reuse, 401)
    after = await http.post(
        "/api/iam/token/refresh", json={"refresh_token": second["refresh_token"]}
    )
    _assert_json_error(after, 401)
    # Refresh tokens are not access tokens anywhere.
    for token in (first, second["refresh_token"]):
        r = await game.http.get(
            f"/api/leaderboard/sessions/{game.session_id}/top", headers=_bearer(token)
        )
        _assert_json_error(r, 401)


async def test_player_token_cannot_make_host_calls(game: Game, other_game: Game) -> None:
    p = game.players[0]
    sid = game.session_id
    quiz = {
        "title": "not mine",
        "questions": [{"text": "q", "choices": ["a", "b"], "answer": 0}],
    }
    calls = [
        ("POST", "/api/quiz/quizzes", quiz),
        ("POST", "/api/quiz/sessions", {"quiz_id": game.quiz_id, "mode": "live"}),
        ("POST", f"/api/quiz/sessions/{sid}/advance", None),
        ("GET", f"/api/quiz/sessions/{sid}/results", None),
        ("GET", f"/api/quiz/sessions/{sid}/results?format=csv", None),
    ]
    for method, path, body in calls:
        r = await game.http.request(method, path, json=body, headers=p.headers)
        _assert_json_error(r, 403)
    # Another session's host is a host, but not this session's.
    stranger = other_game.host_headers
    for method, path, body in calls[1:]:
        r = await game.http.request(method, path, json=body, headers=stranger)
        _assert_json_error(r, 403)


async def test_outsiders_cannot_read_or_play_a_session(
    game: Game, other_game: Game, base_url: str
) -> None:
    outsider = other_game.players[0]
    sid, member = game.session_id, game.players[0].user_id
    calls = [
        ("GET", f"/api/quiz/sessions/{sid}/question", None),
        ("POST", f"/api/quiz/sessions/{sid}/answers", {"question_id": "q0", "choice": 0}),
        ("GET", f"/api/leaderboard/sessions/{sid}/top", None),
        ("GET", f"/api/leaderboard/sessions/{sid}/players/{member}", None),
    ]
    for method, path, body in calls:
        r = await game.http.request(method, path, json=body, headers=outsider.headers)
        _assert_json_error(r, 403)
    # Unknown sessions: 404, never 5xx, for malformed ids too.
    for bad in (str(uuid.uuid4()), "not-a-uuid", "0" * 64):
        r = await game.http.get(f"/api/leaderboard/sessions/{bad}/top", headers=outsider.headers)
        _assert_json_error(r, 404)
        r = await game.http.get(f"/api/quiz/sessions/{bad}/question", headers=outsider.headers)
        _assert_json_error(r, 404)
