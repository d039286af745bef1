"""The public HTTP protocol as the tests speak it, through nginx."""

from __future__ import annotations

import itertools
import os
import uuid

import httpx

PASSWORD = "correct horse 9"

_loopback = itertools.count(int.from_bytes(os.urandom(2), "big"))
# pytest-xdist workers (./dev test's parallel phase) take disjoint addresses.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def next_loopback() -> str:
    """A fresh source address in 127.0.64.0/18 (Linux routes all of 127/8 to lo)."""
    n = (next(_loopback) * _WORKERS + _WORKER) % (64 * 254)
    return f"127.0.{64 + n // 254}.{n % 254 + 1}"


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Api:
    """Small helper around the public HTTP protocol for tests."""

    def __init__(self, http: httpx.Client):
        self.http = http

    def guest(self, nickname: str | None = None) -> dict:
        r = self.http.post("/api/iam/guests", json={"nickname": nickname or unique("p")})
        assert r.status_code == 201, r.text
        return r.json()

    def host(self, username: str | None = None, password: str = PASSWORD) -> dict:
        """A new host, signed in. Sent from a loopback address of its own, since nginx
        limits sign-ups and logins per address (5/s) and every test runs on 127.0.0.1."""
        username = username or unique("host")
        transport = httpx.HTTPTransport(local_address=next_loopback())
        with httpx.Client(base_url=self.http.base_url, transport=transport, timeout=20) as c:
            r = c.post("/api/iam/users", json={"username": username, "password": password})
            assert r.status_code == 201, r.text
            r = c.post("/api/iam/token", json={"username": username, "password": password})
            assert r.status_code == 200, r.text
        return r.json()

    @staticmethod
    def auth(tokens: dict) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens['access_token']}"}


def join(http: httpx.Client, player: dict, **body: str) -> httpx.Response:
    return http.post("/api/quiz/sessions/join", headers=Api.auth(player), json=body)


def question(http: httpx.Client, player: dict, session_id: str) -> httpx.Response:
    return http.get(f"/api/quiz/sessions/{session_id}/question", headers=Api.auth(player))


def answer(
    http: httpx.Client, player: dict, session_id: str, question_id: str, choice: int
) -> httpx.Response:
    return http.post(
        f"/api/quiz/sessions/{session_id}/answers",
        headers=Api.auth(player),
        json={"question_id": question_id, "choice": choice},
    )
