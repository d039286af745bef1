"""Join codes cannot be guessed without limit, through nginx: past
``join_code_misses`` wrong codes in a window, an address gets 429 with
Retry-After (right codes included); other addresses are not affected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from services.common.settings import get_settings
from tests.chaos.game import Game, Plan, started
from tests.conftest import next_loopback
from tests.support.codes import free_codes

pytestmark = pytest.mark.stack


@pytest_asyncio.fixture(scope="module")
async def game(base_url: str) -> AsyncIterator[Game]:
    async with started(base_url, Plan(players=2, questions=1, mode="live")) as g:
        yield g


def _client(base_url: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=next_loopback())
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=20)


async def _code(g: Game) -> str:
    r = await g.http.post(
        "/api/quiz/sessions", json={"quiz_id": g.quiz_id, "mode": "live"}, headers=g.host_headers
    )
    assert r.status_code == 201, r.text
    return r.json()["code"]


async def test_guessing_join_codes_is_limited_per_address(game: Game, base_url: str) -> None:
    limit = get_settings().join_code_misses
    code = await _code(game)
    wrong = await free_codes(limit + 3)
    headers = game.players[0].headers
    async with _client(base_url) as guesser, _client(base_url) as bystander:
        statuses = []
        for guess in wrong:
            r = await guesser.post("/api/quiz/sessions/join", json={"code": guess}, headers=headers)
            statuses.append(r.status_code)
        assert statuses[:limit] == [404] * limit, statuses
        assert set(statuses[limit:]) == {429}, statuses
        assert r.json() == {
            "status_code": 429,
            "detail": "Too many wrong join codes from this address, retry later",
        }
        assert 0 < int(r.headers["retry-after"]) <= get_settings().join_code_window_s
        # The right code is refused too from that address: guessing gains nothing.
        r = await guesser.post("/api/quiz/sessions/join", json={"code": code}, headers=headers)
        assert r.status_code == 429, r.text
        # Joining by session id (a UUID, not guessable) is not limited.
        r = await guesser.post(
            "/api/quiz/sessions/join", json={"session_id": game.session_id}, headers=headers
        )
        assert r.status_code == 200, r.text
        # Another address joins by code as usual.
        r = await bystander.post(
            "/api/quiz/sessions/join", json={"code": code}, headers=game.players[1].headers
        )
        assert r.status_code == 200, r.text
