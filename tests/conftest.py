"""Shared fixtures. Tests marked ``stack`` talk to the real stack that ``./dev test``
started (its URLs arrive as QUIZ_* variables); the others are pure unit tests.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_URL = os.environ.get("QUIZ_BASE_URL", "")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack: needs the running stack (./dev test starts it)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BASE_URL:
        return
    skip = pytest.mark.skip(reason="needs the stack: run through ./dev test")
    for item in items:
        if "stack" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def base_url() -> str:
    return BASE_URL


@pytest.fixture(scope="session")
def stack_dir() -> Path:
    return Path(os.environ["QUIZ_STACK_DIR"])


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    """A plain client of nginx (no auth header)."""
    with httpx.Client(base_url=base_url, timeout=20) as c:
        yield c


_loopback = itertools.count(int.from_bytes(os.urandom(2), "big"))


def next_loopback() -> str:
    """A fresh source address in 127.0.64.0/18 (Linux routes all of 127/8 to lo)."""
    n = next(_loopback) % (64 * 254)
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

    def host(self, username: str | None = None, password: str = "correct horse 9") -> dict:
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


@pytest.fixture(scope="session")
def api(http: httpx.Client) -> Api:
    return Api(http)
