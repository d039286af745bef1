"""Hostile input found by an outside probe, through nginx: each was a 500 or a
silent acceptance and is now a clear 4xx JSON error.

Deeply nested JSON (msgspec's RecursionError), NUL in text that reaches a
PostgreSQL column, types coerced ("1" and 1.0 taken as the integer 1), other
spellings of a session id that got a board of their own, invisible and bidi
characters in nicknames, and the CSV export's header and formula guard.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from services.quiz.results import _cell
from tests.chaos.game import Game, Plan
from tests.conftest import next_loopback, unique

pytestmark = pytest.mark.stack

DEEP = "[" * 1500 + "]" * 1500  # 3,000 bytes: fits under the answers' 4 KiB cap
DEEP_OBJECT = '{"a":' * 1500 + "1" + "}" * 1500


@pytest_asyncio.fixture(scope="module")
async def game(base_url: str) -> AsyncIterator[Game]:
    """A live session with two joined players, its first question open."""
    g = Game(base_url, Plan(players=2, questions=2, mode="live", time_limit_s=60))
    await g.setup(connect=False)
    r = await g.http.post(f"/api/quiz/sessions/{g.session_id}/advance", headers=g.host_headers)
    assert r.status_code == 200, r.text
    yield g
    await g.close()


@pytest_asyncio.fixture
async def fresh(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client from an address of its own (nginx limits sign-ups per address)."""
    transport = httpx.AsyncHTTPTransport(local_address=next_loopback())
    async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=20) as c:
        yield c


def _json_error(r: httpx.Response, status: int | tuple[int, ...], where: str = "") -> dict:
    want = (status,) if isinstance(status, int) else status
    assert r.status_code in want, f"{where} {r.request.url.path}: {r.status_code} {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json"), r.text[:300]
    body = r.json()
    assert body["status_code"] == r.status_code and body["detail"], body
    return body


def _json_endpoints(g: Game) -> list[tuple[str, dict[str, str]]]:
    """(path, headers) of every endpoint that takes a JSON body."""
    sid = g.session_id
    return [
        ("/api/iam/guests", {}),
        ("/api/iam/users", {}),
        ("/api/iam/token", {}),
        ("/api/iam/token/refresh", {}),
        ("/api/quiz/quizzes", g.host_headers),
        ("/api/quiz/sessions", g.host_headers),
        ("/api/quiz/sessions/join", g.players[0].headers),
        (f"/api/quiz/sessions/{sid}/answers", g.players[0].headers),
    ]


async def test_deeply_nested_json_is_400_malformed_everywhere(
    game: Game, fresh: httpx.AsyncClient
) -> None:
    failures = []
    for path, headers in _json_endpoints(game):
        for body in (DEEP, DEEP_OBJECT, '{"nickname":' + DEEP + "}"):
            r = await fresh.post(
                path, content=body, headers={**headers, "Content-Type": "application/json"}
            )
            if r.status_code == 429:
                continue  # nginx's per-address limit on sign-ups: not the service's answer
            if r.status_code not in (400, 413, 422) or not r.headers["content-type"].startswith(
                "application/json"
            ):
                failures.append(f"{path} {body[:12]}...: {r.status_code} {r.text[:120]}")
            elif (
                body in (DEEP, DEEP_OBJECT)
                and r.status_code != 413
                and r.json()["detail"] != "Malformed JSON body"
            ):
                failures.append(f"{path}: {r.json()}")
    assert not failures, "\n".join(failures)


async def test_very_deep_json_to_an_unauthenticated_endpoint(fresh: httpx.AsyncClient) -> None:
    """The probe's body: 50,000 brackets to /api/iam/guests (400, or nginx's 413)."""
    r = await fresh.post(
        "/api/iam/guests",
        content="[" * 50_000 + "]" * 50_000,
        headers={"Content-Type": "application/json"},
    )
    _json_error(r, (400, 413))


def _quiz(**change: object) -> dict:
    question = {"text": "q?", "choices": ["a", "b"], "answer": 0, "time_limit_s": 10}
    quiz: dict = {"title": "t", "questions": [question]}
    for key, value in change.items():
        if key in question:
            question[key] = value
        else:
            quiz[key] = value
    return quiz


async def test_nul_in_text_is_422_everywhere(game: Game, fresh: httpx.AsyncClient) -> None:
    sid, player, host = game.session_id, game.players[0].headers, game.host_headers
    cases: list[tuple[str, dict, dict[str, str]]] = [
        ("/api/quiz/quizzes", _quiz(title="a\u0000b"), host),
        ("/api/quiz/quizzes", _quiz(text="q\u0000?"), host),
        ("/api/quiz/quizzes", _quiz(choices=["a", "b\u0000"]), host),
        ("/api/quiz/sessions", {"quiz_id": "\u0000" + game.quiz_id}, host),
        ("/api/quiz/sessions/join", {"code": "12\u00003"}, player),
        ("/api/quiz/sessions/join", {"session_id": sid + "\u0000"}, player),
        (f"/api/quiz/sessions/{sid}/answers", {"question_id": "q\u0000", "choice": 0}, player),
        ("/api/iam/guests", {"nickname": "ni\u0000ck"}, {}),
        ("/api/iam/users", {"username": "us\u0000er", "password": "long enough pw"}, {}),
        (
            "/api/iam/users",
            {"username": unique("h"), "password": "pw long", "nickname": "a\u0000"},
            {},
        ),
        ("/api/iam/token", {"username": "us\u0000er", "password": "whatever"}, {}),
    ]
    failures = []
    for path, body, headers in cases:
        r = await fresh.post(path, json=body, headers=headers)
        if r.status_code != 422:
            failures.append(f"{path} {body}: {r.status_code} {r.text[:160]}")
    assert not failures, "\n".join(failures)


async def test_types_are_strict(game: Game, fresh: httpx.AsyncClient) -> None:
    sid, player, host = game.session_id, game.players[0].headers, game.host_headers
    question = (await game.http.get(f"/api/quiz/sessions/{sid}/question", headers=player)).json()
    qid = question["question_id"]
    cases: list[tuple[str, dict, dict[str, str]]] = [
        (f"/api/quiz/sessions/{sid}/answers", {"question_id": qid, "choice": "1"}, player),
        (f"/api/quiz/sessions/{sid}/answers", {"question_id": qid, "choice": 1.0}, player),
        (f"/api/quiz/sessions/{sid}/answers", {"question_id": qid, "choice": True}, player),
        (f"/api/quiz/sessions/{sid}/answers", {"question_id": 7, "choice": 1}, player),
        ("/api/quiz/quizzes", _quiz(answer="0"), host),
        ("/api/quiz/quizzes", _quiz(time_limit_s=10.0), host),
        ("/api/quiz/quizzes", _quiz(public="true"), host),
        ("/api/iam/guests", {"nickname": 12345}, {}),
    ]
    failures = []
    for path, body, headers in cases:
        r = await fresh.post(path, json=body, headers=headers)
        if r.status_code != 422:
            failures.append(f"{path} {body}: {r.status_code} {r.text[:160]}")
        elif "field `" not in r.json()["detail"]:
            failures.append(f"{path} {body}: the detail names no field: {r.json()}")
    assert not failures, "\n".join(failures)
    # The refused answers did not count: the player still answers (as an integer).
    r = await game.http.post(
        f"/api/quiz/sessions/{sid}/answers", json={"question_id": qid, "choice": 1}, headers=player
    )
    assert r.status_code == 200, r.text


def _spellings(session_id: str) -> list[str]:
    u = uuid.UUID(session_id)
    return [session_id.upper(), u.hex, "{" + session_id + "}", u.urn, f" {session_id}"]


async def test_other_spellings_of_a_session_id_are_unknown(game: Game) -> None:
    player, host = game.players[0], game.host_headers
    failures = []
    for other in _spellings(game.session_id):
        path = f"/api/leaderboard/sessions/{other}"
        calls = [
            ("GET", f"{path}/top", None, player.headers),
            ("GET", f"{path}/players/{player.user_id}", None, player.headers),
            ("GET", f"/api/quiz/sessions/{other}/question", None, player.headers),
            (
                "POST",
                f"/api/quiz/sessions/{other}/answers",
                {"question_id": "x", "choice": 0},
                player.headers,
            ),
            ("GET", f"/api/quiz/sessions/{other}/results", None, host),
            ("POST", "/api/quiz/sessions/join", {"session_id": other}, player.headers),
        ]
        for method, url, body, headers in calls:
            r = await game.http.request(method, url, json=body, headers=headers)
            if r.status_code != 404:
                failures.append(f"{method} {url}: {r.status_code} {r.text[:120]}")
    assert not failures, "\n".join(failures)
    # The canonical spelling works (the refusals above are about the spelling).
    r = await game.http.get(
        f"/api/leaderboard/sessions/{game.session_id}/top", headers=player.headers
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "nickname",
    [
        "\u200e=cmd",
        "a\u200fb",
        "\u061cx",
        "\u200b=1+1",
        "\ufeff=1",
        "x\u2060y",
        "\u202eevil",
        "a\u00adb",
    ],
)
async def test_nicknames_refuse_invisible_and_bidi_characters(
    fresh: httpx.AsyncClient, nickname: str
) -> None:
    r = await fresh.post("/api/iam/guests", json={"nickname": nickname})
    _json_error(r, 422, repr(nickname))
    assert "nickname" in r.json()["detail"]


async def test_nicknames_keep_emoji_joiners(fresh: httpx.AsyncClient) -> None:
    """ZWJ sequences and flag tags are format characters too, and stay allowed."""
    for nickname in (
        "\U0001f469\u200d\U0001f4bb dev",
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    ):
        r = await fresh.post("/api/iam/guests", json={"nickname": nickname})
        assert r.status_code == 201, (nickname, r.text)


async def test_results_csv_header_is_set_once(game: Game) -> None:
    r = await game.http.get(
        f"/api/quiz/sessions/{game.session_id}/results?format=csv", headers=game.host_headers
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"


@pytest.mark.parametrize(
    "lead", ["", "\u200b", "\ufeff", "\u200e", "\u200f", "\u061c", " ", "\u200b\u200e "]
)
@pytest.mark.parametrize("formula", ["=1+1", "+1", "-1", "@SUM(A1)"])
def test_csv_cells_that_a_spreadsheet_would_run_are_prefixed(lead: str, formula: str) -> None:
    """Spreadsheets skip invisible characters before a formula (stored nicknames from
    before the nickname rule may hold them)."""
    assert _cell(lead + formula) == "'" + lead + formula


def test_csv_cells_of_plain_nicknames_stay_as_they_are() -> None:
    for text in ("alice", "\u200bbob", "a=b", "1-2"):
        assert _cell(text) == text
