"""The IAM's HTTP app in the test process (AsyncTestClient), beside tests/test_iam.py
through nginx: each IAM error answers its status, body and headers through the app
factory's one handler (a fake IamService), and guests, hosts, login and refresh
rotation on the stack's real PostgreSQL with a key ring of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.iam.controllers import IamController
from services.iam.keys import KeyRing
from services.iam.service import (
    IamService,
    InvalidCredentials,
    InvalidNickname,
    InvalidRefreshToken,
    UsernameTaken,
)
from tests.support.api import unique
from tests.support.inprocess import serve, trusted_ring, value

PASSWORD = "correct horse 9"
CHALLENGE = 'Bearer realm="quizrt"'


class Refusing(IamService):
    """An IamService that refuses everything, each call with its own error."""

    async def create_guest(self, nickname: str) -> Any:
        raise InvalidNickname("nickname must not be blank")

    async def register(self, *args: Any) -> Any:
        raise UsernameTaken()

    async def login(self, *args: Any) -> Any:
        raise InvalidCredentials()

    async def refresh(self, token: str) -> Any:
        raise InvalidRefreshToken("refresh token reused: its family is revoked")


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


async def test_each_iam_error_answers_its_status_body_and_headers() -> None:
    async with serve("iam", [IamController], {"iam": value(Refusing())}) as c:
        r = await c.post("/api/iam/guests", json={"nickname": " x "})
        assert error(r, 422) == {
            "status_code": 422,
            "detail": "nickname must not be blank (field `nickname`)",
            "extra": [{"key": "nickname", "message": "nickname must not be blank"}],
        }
        user = {"username": "someone", "password": PASSWORD}
        r = await c.post("/api/iam/users", json=user)
        assert error(r, 409) == {"status_code": 409, "detail": "Username is taken"}
        r = await c.post("/api/iam/token", json=user)
        assert error(r, 401) == {"status_code": 401, "detail": "Wrong username or password"}
        assert r.headers["www-authenticate"] == CHALLENGE
        r = await c.post("/api/iam/token/refresh", json={"refresh_token": "t"})
        assert error(r, 401) == {
            "status_code": 401,
            "detail": "refresh token reused: its family is revoked",
        }
        assert r.headers["www-authenticate"] == CHALLENGE
        # The body is checked (trimmed, strict) before the service is asked.
        r = await c.post("/api/iam/guests", json={"nickname": 7})
        assert "(field `nickname`)" in error(r, 422)["detail"]
        r = await c.post("/api/iam/users", json={**user, "role": "host"})
        assert "role" in error(r, 422)["detail"]


# ------------------------------------------------------------------ on the real PostgreSQL


@pytest.fixture
def ring() -> Iterator[KeyRing]:
    with trusted_ring() as r:
        yield r


@pytest.fixture
async def iam_app(ring: KeyRing) -> AsyncIterator[httpx.AsyncClient]:
    service = IamService()
    service.keys = ring
    async with serve("iam", [IamController], {"iam": value(service)}, real=True) as c:
        yield c


@pytest.mark.stack
async def test_guests_hosts_login_and_refresh_in_process(
    iam_app: httpx.AsyncClient, ring: KeyRing
) -> None:
    c = iam_app
    r = await c.post("/api/iam/guests", json={"nickname": "  in process  "})
    assert r.status_code == 201, r.text
    assert r.json()["user"]["nickname"] == "in process"
    r = await c.post("/api/iam/guests", json={"nickname": "a\u202eb"})
    assert error(r, 422)["detail"] == (
        "nickname must not contain control or invisible format characters (field `nickname`)"
    )
    keys = (await c.get("/api/iam/jwks")).json()["keys"]
    assert [k["kid"] for k in keys] == [ring.signing_kid]

    user = {"username": unique("host"), "password": PASSWORD}
    r = await c.post("/api/iam/users", json=user)
    assert r.status_code == 201 and r.json()["role"] == "host", r.text
    r = await c.post("/api/iam/users", json=user)
    assert error(r, 409) == {"status_code": 409, "detail": "Username is taken"}
    r = await c.post("/api/iam/token", json={**user, "password": "wrong password"})
    assert error(r, 401)["detail"] == "Wrong username or password"
    assert r.headers["www-authenticate"] == CHALLENGE

    first = (await c.post("/api/iam/token", json=user)).json()
    r = await c.post("/api/iam/token/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    r = await c.post("/api/iam/token/refresh", json={"refresh_token": first["refresh_token"]})
    assert error(r, 401)["detail"] == "refresh token reused: its family is revoked"
    r = await c.post("/api/iam/token/refresh", json={"refresh_token": second["refresh_token"]})
    assert error(r, 401)["detail"] == "refresh token unknown, expired or revoked"
