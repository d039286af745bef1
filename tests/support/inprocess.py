"""The HTTP apps in the test process: fast tests through Litestar's AsyncTestClient.

``trusted_ring`` makes a key ring of the test's own that the process's token
verifier trusts for as long as the test runs (the services' ``caller`` dependency
and ``host_only`` guard verify through it), so a test mints real signed tokens
without IAM. ``serve`` builds a service's app with ``create_app``, the factory
every service uses, without its background work, on the real PostgreSQL and Redis of the stack
(``real=True``; the ``QUIZ_*`` variables name them) or on fakes given through
``dependencies`` (for routing, validation and error mapping).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.di import Provide
from litestar.testing import AsyncTestClient

from services.common import auth, db, redis
from services.common.web import create_app
from services.iam.keys import KeyRing, load_from_pem
from tests.support.tokens import claims, sign


def new_ring() -> KeyRing:
    """A fresh Ed25519 key ring (nobody else has it)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return load_from_pem(pem.decode())


@contextmanager
def trusted_ring() -> Iterator[KeyRing]:
    """A new key ring the shared verifier trusts until the block ends."""
    ring = new_ring()
    original = auth.verifier
    trusting = auth.TokenVerifier(jwks_url="http://127.0.0.1:9/not-asked")
    trusting.load_jwks(ring.jwks())
    auth.verifier = trusting
    try:
        yield ring
    finally:
        auth.verifier = original


def bearer(ring: KeyRing, role: str = "player", user_id: str | None = None) -> dict[str, str]:
    """Authorization header of a valid access token of a new (or the given) user."""
    uid = user_id or str(uuid.uuid4())
    token = sign(ring, claims(uid, role=role, nickname=f"{role}-{uid[:6]}"))
    return {"Authorization": f"Bearer {token}"}


def user_of(headers: Mapping[str, str]) -> str:
    """The user id in a header made by ``bearer``."""
    token = headers["Authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def value(obj: Any) -> Provide:
    """A dependency that provides ``obj`` (a fake connection or Redis client)."""
    return Provide(lambda: obj, sync_to_thread=False)


@asynccontextmanager
async def serve(
    service: str,
    route_handlers: Sequence[Any],
    dependencies: Mapping[str, Provide] | None = None,
    *,
    real: bool = False,
) -> AsyncIterator[httpx.AsyncClient]:
    """An AsyncTestClient of ``/api/<service>`` serving ``route_handlers``, with the
    factory's dependencies (``conn``, ``redis``) or the ones given instead.

    ``real``: the app opens the process's PostgreSQL pool at its start and closes
    it and the Redis client at its end. The client runs the app on an event loop
    of its own (a thread), so one real app at a time.
    """
    app = create_app(
        service,
        route_handlers,
        health={},
        on_startup=[db.open_pool] if real else [],
        on_shutdown=[db.close_pool, redis.close_redis] if real else [],
        dependencies=dependencies,
    )
    async with AsyncTestClient(app) as client:
        yield client
