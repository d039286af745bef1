"""The one auth guard: bearer tokens verified locally against IAM's cached JWKS.

Every service declares ``caller: Caller`` (any signed-in user) behind the
``signed_in`` guard, or uses the ``host_only`` guard; the socket.io tier calls
``verifier.verify`` at connect.
No network hop per request: the JWKS is fetched once and again only when a
token names a key id that is not known yet (at most once per few seconds).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import msgspec
from jwt import PyJWK
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from services.common.settings import get_settings

ALGORITHMS = ["EdDSA", "ES256"]


class Caller(msgspec.Struct, frozen=True):
    """Who sent the request, as the access token says."""

    user_id: str
    role: str  # "player" | "host"
    nickname: str


class AuthError(Exception):
    """The token is missing, malformed, forged, expired or for another audience."""


class TokenVerifier:
    def __init__(self, jwks_url: str | None = None, refetch_interval_s: float = 5.0):
        s = get_settings()
        self.jwks_url = jwks_url or f"{s.iam_url}/api/iam/jwks"
        self.audience = s.jwt_audience
        self.issuer = s.jwt_issuer
        # kid -> the JWK: its key and the one algorithm it verifies.
        self.keys: dict[str, PyJWK] = {}
        self._fetched_at = 0.0
        self._refetch_interval = refetch_interval_s
        self._lock = asyncio.Lock()
        # token -> (Caller, exp): a verified token is not verified again until it expires.
        self._cache: dict[str, tuple[Caller, float]] = {}

    def load_jwks(self, jwks: dict) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            try:
                keys[jwk["kid"]] = PyJWK.from_dict(jwk)
            except Exception:
                continue
        self.keys = keys

    async def refresh(self, force: bool = False) -> None:
        async with self._lock:
            now = time.monotonic()
            if not force and now - self._fetched_at < self._refetch_interval:
                return
            self._fetched_at = now
            async with httpx.AsyncClient(timeout=3) as client:
                r = await client.get(self.jwks_url)
                r.raise_for_status()
                self.load_jwks(r.json())

    def _fresh(self, token: str, now: float) -> tuple[Caller, float] | None:
        hit = self._cache.get(token)
        return hit if hit is not None and hit[1] > now else None

    def cached(self, token: str) -> Caller | None:
        """The caller of a token this process verified and that has not expired yet."""
        hit = self._fresh(token, time.time())
        return hit[0] if hit is not None else None

    async def verify(self, token: str) -> Caller:
        """Caller of a valid access token; raises AuthError otherwise."""
        return (await self.verify_until(token))[0]

    async def verify_until(self, token: str) -> tuple[Caller, float]:
        """Caller of a valid access token and when it expires (Unix seconds)."""
        now = time.time()
        hit = self._fresh(token, now)
        if hit is not None:
            return hit
        try:
            header = jwt.get_unverified_header(token)
        except Exception as e:  # PyJWTError, and whatever a crafted header provokes
            raise AuthError("malformed token") from e
        kid = header.get("kid")
        if header.get("alg") not in ALGORITHMS or not kid or not isinstance(kid, str):
            raise AuthError("unsupported token")
        if kid not in self.keys:
            try:
                await self.refresh()
            except Exception as e:
                raise AuthError("cannot verify token now") from e
        jwk = self.keys.get(kid)
        if jwk is None:
            raise AuthError("unknown signing key")
        if header.get("alg") != jwk.algorithm_name:
            # A key verifies one algorithm: a token signed otherwise under its kid is forged.
            raise AuthError("token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key=jwk.key,
                algorithms=[jwk.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise AuthError("token expired") from e
        except Exception as e:
            # PyJWTError, but also what PyJWT raises for a token whose algorithm does
            # not fit the key named by its kid (e.g. TypeError "Expecting a
            # PEM-formatted key" for ES256 against an Ed25519 key): all are 401.
            raise AuthError("invalid token") from e
        if claims.get("typ") != "access" or not isinstance(claims.get("exp"), int | float):
            raise AuthError("not an access token")
        caller = Caller(
            user_id=str(claims["sub"]),
            role=str(claims.get("role", "player")),
            nickname=str(claims.get("nickname", "")),
        )
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[token] = (caller, float(claims["exp"]))
        return caller, float(claims["exp"])


verifier = TokenVerifier()


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise NotAuthorizedException("Missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("Authorization must be 'Bearer <access_token>'")
    return token.strip()


async def _verified(connection: ASGIConnection) -> Caller:
    """The request's caller, verified once per request (kept in its state)."""
    caller = connection.state.get("caller")
    if isinstance(caller, Caller):
        return caller
    token = bearer_token(connection.headers.get("authorization"))
    try:
        caller = await verifier.verify(token)
    except AuthError as e:
        raise NotAuthorizedException(str(e)) from e
    connection.state.caller = caller
    return caller


async def _provide_caller(request: Request) -> Caller:
    return await _verified(request)


provide_caller = Provide(_provide_caller)
"""Dependency: ``dependencies={"caller": provide_caller}`` on a router or handler."""


async def signed_in(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: a valid access token (401 otherwise). Guards run before the dependencies
    are resolved, so a refused request never takes a PostgreSQL connection (the
    ``conn`` dependency is resolved alongside ``caller``)."""
    await _verified(connection)


async def host_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Guard: the caller must be a host (registered user). Runs the token check itself
    unless ``signed_in`` ran before it."""
    caller = await _verified(connection)
    if caller.role != "host":
        raise PermissionDeniedException("Only hosts may do this")
