"""The Litestar app factory every service uses: one error mapper, health, OpenAPI,
and the per-request dependencies ``conn`` and ``redis``.

Every error is JSON ``{status_code, detail, extra?}``, built in one place
(``services.common.errors.error_body``) and answered by the handlers registered
here: a ``ServiceError`` with its own status; malformed JSON 400 (nesting too deep
to decode included); well-formed but invalid fields 422 naming the field (types
are strict: ``"1"`` or ``1.0`` is no integer); Litestar's own HTTP errors (401 of
the auth guard, 404/405 of the router) with theirs; PostgreSQL unreachable 503
with ``Retry-After``; anything else 500, logged, with no detail of its own.

Handlers declare ``conn: DbConnection`` (a PostgreSQL connection from the pool,
released after the answer is built) or ``redis: RedisClient`` (the process's
client); an in-process test passes ``dependencies=`` to replace either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.di import Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import Dependency
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from redis.asyncio import Redis

from services.common import db, metrics, redis
from services.common.errors import DB_DOWN_ERRORS, DatabaseUnavailable, ServiceError, error_body
from services.common.logs import setup_logging

log = logging.getLogger("quizrt.web")
_BACKTICKED = re.compile(r"field `([^`]+)`")

HealthCheck = Callable[[], Awaitable[bool]]

# Swagger UI's files, vendored from npm's swagger-ui-dist by web/build.sh and served
# by nginx with the web client: the docs pages (same origin as the tokens in
# localStorage) load no third-party script. Keep in step with web/package.json.
SWAGGER_UI_VERSION = "5.35.0"
SWAGGER_UI_ASSETS = f"/assets/swagger-ui-{SWAGGER_UI_VERSION}"


def swagger_plugin() -> SwaggerRenderPlugin:
    """Swagger UI from our own origin (Litestar's default loads it from a CDN)."""
    return SwaggerRenderPlugin(
        js_url=f"{SWAGGER_UI_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_UI_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_UI_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f'<link rel="icon" type="image/png" href="{SWAGGER_UI_ASSETS}/favicon-32x32.png">',
    )


# ------------------------------------------------------------------ dependencies

# Not validated by Litestar: the pool hands out a connection proxy, and a cluster
# client stands in for ``Redis``; both are what the services expect.
DbConnection = Annotated[asyncpg.Connection, Dependency(skip_validation=True)]
RedisClient = Annotated[Redis, Dependency(skip_validation=True)]


async def _provide_connection() -> AsyncIterator[asyncpg.Connection]:
    async with db.connection() as conn:
        yield conn


def _provide_redis() -> Redis:
    return redis.get_redis()


DEPENDENCIES: dict[str, Provide] = {
    "conn": Provide(_provide_connection),
    "redis": Provide(_provide_redis, sync_to_thread=False),
}
"""What ``create_app`` provides every handler that asks (by parameter name)."""


# ------------------------------------------------------------------ errors


def _error(
    status: int, detail: str, extra: Any = None, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        error_body(status, detail, extra),
        status_code=status,
        media_type=MediaType.JSON,
        headers=dict(headers) if headers else None,
    )


def _service_error(_: Request, exc: ServiceError) -> Response:
    return _error(exc.status_code, exc.message(), exc.extra(), exc.headers)


def _db_down(_: Request, exc: Exception) -> Response:
    return _service_error(_, DatabaseUnavailable())


def _validation_error(_: Request, exc: ValidationException) -> Response:
    extra = exc.extra if isinstance(exc.extra, list) else []
    detail = str(exc.detail)
    if "malformed" in detail.lower() or "json is malformed" in str(extra).lower():
        return _error(400, "Malformed JSON body")
    fields = [e.get("key") for e in extra if isinstance(e, dict) and e.get("key")]
    messages = [e.get("message") for e in extra if isinstance(e, dict) and e.get("message")]
    if fields and fields[0] == "data" and messages:
        # A missing or unknown field is reported on the whole body ("data"); name it.
        inner = _BACKTICKED.search(str(messages[0]))
        if inner:
            fields[0] = inner.group(1)
    if fields or messages:
        what = messages[0] if messages else "invalid value"
        named = f" (field `{fields[0]}`)" if fields else ""
        return _error(422, f"{what}{named}", extra)
    return _error(400, detail, extra)


def _too_deep(_: Request, exc: RecursionError) -> Response:
    # msgspec gives up on JSON nested deeper than the interpreter's recursion limit.
    return _error(400, "Malformed JSON body")


_BODY_TYPES: dict[BaseRouteHandler, type[msgspec.Struct] | None] = {}
_AT = re.compile(r"^(.*?)(?: - at `\$\.?([^`]*)`)?$", re.S)


def _body_type(handler: BaseRouteHandler) -> type[msgspec.Struct] | None:
    """The Struct a handler's ``data`` parameter is, or None (cached per handler)."""
    if handler not in _BODY_TYPES:
        field = handler.parsed_fn_signature.parameters.get("data")
        kind = field.annotation if field is not None else None
        is_struct = isinstance(kind, type) and issubclass(kind, msgspec.Struct)
        _BODY_TYPES[handler] = kind if is_struct else None  # type: ignore[assignment]
    return _BODY_TYPES[handler]


async def strict_body(request: Request) -> None:
    """before_request: the JSON body must fit its Struct with strict types.

    Litestar converts bodies leniently (``"1"`` and ``1.0`` become the integer 1,
    ``"true"`` a bool); the protocol says 422. The body is decoded once (Litestar
    caches it) and converted strictly here, before Litestar's own conversion.
    Handlers with a ``before_request`` of their own call this at its end.
    """
    kind = _body_type(request.route_handler)
    if kind is None:
        return
    try:
        body = await request.json()
    except RecursionError:
        raise ValidationException("Malformed JSON body") from None
    except Exception:  # malformed JSON: Litestar's body parsing answers 400
        return
    try:
        msgspec.convert(body, kind, strict=True)
    except msgspec.ValidationError as e:
        m = _AT.match(str(e))
        message, key = (m.group(1), m.group(2)) if m else (str(e), None)
        extra: dict[str, str] = {"message": message, "source": "body"}
        if key:
            extra["key"] = key
        raise ValidationException(message, extra=[extra]) from None


def _http_error(_: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, str(exc.detail), exc.extra, exc.headers)


def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error")


def create_app(
    service: str,
    route_handlers: Sequence[Any],
    *,
    health: dict[str, HealthCheck],
    degraded_ok: frozenset[str] = frozenset(),
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    version: str = "1.0.0",
    description: str = "",
    dependencies: Mapping[str, Provide] | None = None,
) -> Litestar:
    """A Litestar app mounted at ``/api/<service>`` with health and OpenAPI.

    ``health`` maps dependency names to async checks; ``GET /api/<service>/health``
    answers 200 with each one's state, or 503 when one it needs is down. Names in
    ``degraded_ok`` are reported but do not make it 503 (the service works without
    them, e.g. the quiz service keeps accepting answers while Kafka is down).
    ``dependencies`` replace or add to ``DEPENDENCIES`` (tests give fakes this way).
    """
    setup_logging()

    @get("/health", sync_to_thread=False, opt={"public": True}, include_in_schema=False)
    async def health_check() -> Response:
        states = {name: await check() for name, check in health.items()}
        ok = all(up for name, up in states.items() if name not in degraded_ok)
        body = {
            "service": service,
            "status": "ok" if all(states.values()) else "degraded" if ok else "down",
            "dependencies": {k: "up" if v else "down" for k, v in states.items()},
        }
        return Response(body, status_code=200 if ok else 503)

    from litestar import Router

    router = Router(path=f"/api/{service}", route_handlers=[health_check, *route_handlers])

    async def serve_metrics() -> None:
        metrics.serve()

    return Litestar(
        route_handlers=[router],
        on_startup=[serve_metrics, *on_startup],
        on_shutdown=list(on_shutdown),
        before_request=strict_body,
        dependencies={**DEPENDENCIES, **(dependencies or {})},
        exception_handlers={
            ServiceError: _service_error,
            ValidationException: _validation_error,
            HTTPException: _http_error,
            RecursionError: _too_deep,
            **{e: _db_down for e in DB_DOWN_ERRORS},
            Exception: _internal_error,
        },
        openapi_config=OpenAPIConfig(
            title=f"quizrt {service} service",
            version=version,
            description=description,
            path=f"/api/{service}/schema",
            render_plugins=[swagger_plugin()],
        ),
        debug=False,
    )
