"""The gateway's authorization: the route policy table and the verdict nginx asks for.

nginx sends every ``/api/quiz/`` and ``/api/leaderboard/`` request here first
(``auth_request``): method, path and ``Authorization`` only, never the body.
The verdict is a status (2xx pass, 401, 403) plus headers nginx reads:

- passed: the verified caller (``X-Auth-User-Id``, ``X-Auth-Role``,
  ``X-Auth-Nickname`` percent-encoded UTF-8), which nginx forwards to the
  service in place of any such header a client sent;
- refused: ``X-Gateway-Detail`` (the JSON error's detail) and, for a route that
  does not exist or a method it does not take, ``X-Gateway-Status`` 404/405
  (auth_request only knows 401 and 403, so nginx turns that 403 into it);
- ``X-Accel-Expires``: how long nginx may cache this verdict; never past the
  token's ``exp``, 0 when it must not be cached.

nginx caches a verdict per token and *route class*: the access rule (public,
caller, host) of the ``POLICY`` row the method and path match, so one check of a
player's token serves every caller route (each session's answers, its question,
its board) instead of one per path. ``Policy.nginx_classes`` renders the map nginx
computes the class with from this same table, tagged with the table's fingerprint;
nginx sends the class it computed (``X-Gateway-Class``) and a class that is not the
one this table gives the request is refused uncached (a gateway rendered from
another table). Requests no row takes (404/405, OPTIONS) are cached per method and
path as before.

``POLICY`` is the one table of who may call what; the services keep their own
checks (the session's host, a participant) and verify the token again.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass
from urllib.parse import quote

from litestar import Controller, Request, Response, get
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_500_INTERNAL_SERVER_ERROR,
)

from services.common.auth import AuthError, Caller, TokenVerifier, verifier

log = logging.getLogger("quizrt.gateway")

PASS_TTL_S = 300
"""Longest time nginx keeps a passing verdict (also bounded by the token's exp)."""
REFUSAL_TTL_S = 30
"""Refusals are cached too (a forged token flood costs IAM one check per token)."""
PUBLIC_TTL_S = 300


class Access(enum.Enum):
    PUBLIC = "public"  # no token needed (the service may still read one)
    CALLER = "caller"  # any valid access token
    HOST = "host"  # a valid access token with role host


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # "{name}" is one path segment; a trailing "/**" is any rest (or none)
    access: Access

    def pattern(self) -> re.Pattern[str]:
        rest = self.path.endswith("/**")
        body = self.path[:-3] if rest else self.path
        regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(body))
        return re.compile(f"{regex}(/.*)?" if rest else regex)


_SERVICE_DOCS = [
    Route(m, f"/api/{svc}/{what}", Access.PUBLIC)
    for svc in ("quiz", "leaderboard")
    for what in ("health", "schema/**")
    for m in ("GET", "HEAD")
]

POLICY: tuple[Route, ...] = (
    *_SERVICE_DOCS,
    # quiz: content
    Route("GET", "/api/quiz/quizzes", Access.CALLER),
    Route("POST", "/api/quiz/quizzes", Access.HOST),
    Route("GET", "/api/quiz/quizzes/{quiz_id}", Access.HOST),
    # quiz: sessions
    Route("POST", "/api/quiz/sessions", Access.HOST),
    Route("POST", "/api/quiz/sessions/join", Access.CALLER),
    Route("POST", "/api/quiz/sessions/{session_id}/advance", Access.HOST),
    Route("GET", "/api/quiz/sessions/{session_id}/question", Access.CALLER),
    Route("POST", "/api/quiz/sessions/{session_id}/answers", Access.CALLER),
    Route("GET", "/api/quiz/sessions/{session_id}/results", Access.HOST),
    # leaderboard
    Route("GET", "/api/leaderboard/sessions/{session_id}/top", Access.CALLER),
    Route("GET", "/api/leaderboard/sessions/{session_id}/players/{user_id}", Access.CALLER),
)
"""Who may call which method and path: the gateway's one table."""


class NoRoute(Exception):
    """No route has this path (404) or none of its routes takes this method (405)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class Policy:
    def __init__(self, routes: tuple[Route, ...]):
        self.routes = [(r, r.pattern()) for r in routes]
        text = "\n".join(f"{r.method} {r.path} {r.access.value}" for r in routes)
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:12]

    def _route(self, method: str, path: str) -> Route | None:
        """The first row of this method (HEAD is GET) whose path matches."""
        method = "GET" if method == "HEAD" else method
        for route, pattern in self.routes:
            if route.method == method and pattern.fullmatch(path):
                return route
        return None

    def access(self, method: str, path: str) -> Access:
        """The access rule of ``method path``; raises NoRoute (404/405) for neither."""
        method = "GET" if method == "HEAD" else method
        seen_path = False
        for route, pattern in self.routes:
            if pattern.fullmatch(path):
                if route.method == method:
                    return route.access
                if method == "OPTIONS":  # the service answers which methods it takes
                    return Access.PUBLIC
                seen_path = True
        raise NoRoute(405 if seen_path else 404)

    def class_name(self, access: Access) -> str:
        return f"{access.value}.{self.fingerprint}"

    def cache_class(self, method: str, path: str) -> str:
        """What nginx keys this request's verdict with (besides the token): the
        route class, or the method and path when no row takes them."""
        route = self._route(method, path)
        return f"{method} {path}" if route is None else self.class_name(route.access)

    def nginx_classes(self) -> str:
        """The entries of nginx's map from ``"$request_method $gw_path"`` to the
        route class: one regex per row, in the table's order (nginx takes the first
        regex that matches, as ``_route`` takes the first row)."""
        lines = []
        for route, pattern in self.routes:
            if route.method == "HEAD":
                continue  # never taken: a HEAD request is judged as a GET (above)
            methods = "(GET|HEAD)" if route.method == "GET" else route.method
            regex = f"~^{methods} {pattern.pattern}$"
            if '"' in regex:
                raise ValueError(f"cannot render {route.path!r} for nginx")
            lines.append(f'        "{regex}" "{self.class_name(route.access)}";')
        return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    status: int
    headers: dict[str, str]


def _refused(
    status: int, detail: str, ttl: int = REFUSAL_TTL_S, real: int | None = None
) -> Verdict:
    headers = {"X-Gateway-Detail": detail, "X-Accel-Expires": str(ttl)}
    if real is not None:
        headers["X-Gateway-Status"] = str(real)
    if status == HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="quizrt"'
    return Verdict(status, headers)


_NO_ROUTE_DETAIL = {404: "Not found", 405: "Method not allowed"}


def _pass_ttl(exp: float, now: float) -> int:
    # nginx keeps an entry while its clock's whole second is <= store time + ttl,
    # so one second less than what is left keeps the verdict strictly before exp.
    return max(0, min(PASS_TTL_S, math.floor(exp - now) - 1))


class Gatekeeper:
    """Decides one request from its method, path and Authorization header."""

    def __init__(self, policy: Policy, verifier: TokenVerifier):
        self.policy = policy
        self.verifier = verifier

    async def decide(
        self, method: str, path: str, authorization: str, cache_class: str | None = None
    ) -> Verdict:
        """``cache_class``: what nginx keys the verdict with (``X-Gateway-Class``);
        refused uncached unless it is what this table gives the request."""
        # A header value loses its surrounding spaces on the way ("POST " for an empty
        # path arrives as "POST"), so both sides are compared without them.
        expected = self.policy.cache_class(method, path).strip()
        if cache_class is not None and cache_class.strip() != expected:
            log.error("gateway class %r for %s %s is not this table's", cache_class, method, path)
            return Verdict(HTTP_500_INTERNAL_SERVER_ERROR, {"X-Accel-Expires": "0"})
        try:
            access = self.policy.access(method, path)
        except NoRoute as e:
            return _refused(HTTP_403_FORBIDDEN, _NO_ROUTE_DETAIL[e.status], PUBLIC_TTL_S, e.status)
        if access is Access.PUBLIC:
            return Verdict(HTTP_200_OK, {"X-Accel-Expires": str(PUBLIC_TTL_S)})
        if not authorization:
            return _refused(HTTP_401_UNAUTHORIZED, "Missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _refused(HTTP_401_UNAUTHORIZED, "Authorization must be 'Bearer <access_token>'")
        try:
            caller, exp = await self.verifier.verify_until(token)
        except AuthError as e:
            if str(e) in ("cannot verify token now",):
                # IAM cannot check now: nginx answers 502 + Retry-After (never cached).
                return Verdict(HTTP_500_INTERNAL_SERVER_ERROR, {"X-Accel-Expires": "0"})
            ttl = 0 if str(e) == "unknown signing key" else REFUSAL_TTL_S
            return _refused(HTTP_401_UNAUTHORIZED, str(e), ttl)
        except Exception as e:  # a token that trips the decoder is still only a bad token
            log.warning("token refused by the gateway: %s", type(e).__name__)
            return _refused(HTTP_401_UNAUTHORIZED, "invalid token", 0)
        ttl = _pass_ttl(exp, time.time())
        if access is Access.HOST and caller.role != "host":
            return _refused(HTTP_403_FORBIDDEN, "Only hosts may do this", ttl)
        return Verdict(HTTP_200_OK, {**caller_headers(caller), "X-Accel-Expires": str(ttl)})


def caller_headers(caller: Caller) -> dict[str, str]:
    """The headers nginx forwards to the services for a verified caller."""
    return {
        "X-Auth-User-Id": caller.user_id,
        "X-Auth-Role": caller.role,
        "X-Auth-Nickname": quote(caller.nickname, safe=""),
    }


# The process's shared guard (one cache of verified tokens), fed IAM's own keys.
gatekeeper = Gatekeeper(Policy(POLICY), verifier)


async def load_gateway_keys() -> None:
    """on_startup, after the keyring is loaded: verify with IAM's own public keys."""
    from services.iam.service import get_iam_service

    verifier.load_jwks(get_iam_service().jwks())


class GatewayController(Controller):
    """``GET /api/iam/gateway/verdict``: asked by nginx only (nginx refuses it from outside)."""

    path = "/gateway"
    include_in_schema = False

    @get("/verdict")
    async def verdict(self, request: Request) -> Response[bytes]:
        h = request.headers
        v = await gatekeeper.decide(
            h.get("x-original-method", ""),
            h.get("x-original-uri", ""),
            h.get("authorization", ""),
            h.get("x-gateway-class"),
        )
        return Response(b"", status_code=v.status, headers=v.headers)
