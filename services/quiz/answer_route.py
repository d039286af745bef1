"""The hot route, lean: ``POST /api/quiz/sessions/{session_id}/answers`` in front of
Litestar.

A burst of answers spent more than half of the quiz service's CPU in Litestar's
request handling (routing, the signature model, dependency injection, the
``before_request`` body check, the response object). This ASGI layer takes an answer
that is plainly well formed, with a bearer token this process already verified,
straight to ``answers.submit_once``: the body decoded by msgspec into ``AnswerIn``
with strict types (exactly what ``strict_body`` and Litestar's own decoding accept),
the reply's bytes sent as they are.

Everything else goes to Litestar unchanged, the request body replayed: a body that
does not decode (400/422 with the field named), a missing, malformed or not yet
verified token (Litestar's guard verifies it, caches it, and answers 401 itself), a
second ``Authorization`` header, another method or path. So every error a client can
provoke before scoring keeps Litestar's status and JSON body; the errors of scoring
itself get the error family's one body (``services.common.errors``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from contracts import AnswerIn
from services.common import errors
from services.common.auth import Caller, verifier
from services.common.clock import now_ms
from services.common.errors import DB_DOWN_ERRORS, DatabaseUnavailable, ServiceError
from services.common.metrics import Counter
from services.quiz import answers

log = logging.getLogger("quizrt.quiz.answer_route")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/api/quiz/sessions/"
SUFFIX = "/answers"
MAX_BODY = 64 * 1024  # larger bodies go to Litestar (nginx caps answers at 4 KiB)

SHORT_WAY = Counter(
    "quizrt_answers_short_way", "Answers the lean route took past Litestar's request handling"
)

_decode = msgspec.json.Decoder(AnswerIn, strict=True).decode
_encode = msgspec.json.encode
_JSON = (b"content-type", b"application/json")


def session_of(scope: Scope) -> str | None:
    """The session id of an answer's path, or None for any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    sid = path[len(PREFIX) : -len(SUFFIX)]
    return sid if sid and "/" not in sid else None


def cached_caller(scope: Scope) -> Caller | None:
    """The caller of the request's one bearer token, if this process verified it and
    it has not expired; None sends the request the long way (which verifies)."""
    found: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if found is not None:
                return None
            found = value
    if found is None:
        return None
    scheme, _, token = found.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return verifier.cached(token)


def error_body(exc: Exception) -> tuple[int, bytes, bool]:
    """(status, JSON body, retryable) of a scoring error: the error family's one body."""
    if isinstance(exc, DB_DOWN_ERRORS):
        exc = DatabaseUnavailable()
    if isinstance(exc, ServiceError):
        body = errors.error_body(exc.status_code, exc.message(), exc.extra())
        return exc.status_code, _encode(body), exc.status_code == 503
    return 500, _encode(errors.error_body(500, "Internal server error")), False


async def _send(send: Send, status: int, body: bytes, retry: bool = False) -> None:
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    if retry:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages (to replay) and its body; None when it is too large or
    the client left."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > MAX_BODY:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def lean_answers(inner: ASGIApp) -> ASGIApp:
    """``inner`` (the Litestar app's ASGI handler) with answers taken the short way."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        sid = session_of(scope)
        caller = cached_caller(scope) if sid is not None else None
        if sid is None or caller is None:
            await inner(scope, receive, send)
            return
        messages, raw = await _read_body(receive)
        data: AnswerIn | None = None
        if raw is not None:
            try:
                data = _decode(raw)
            except Exception:  # malformed or invalid: Litestar names the error
                data = None
        if data is None:
            await inner(scope, _replay(messages, receive), send)
            return
        now = now_ms()  # the answer's arrival on the server clock
        SHORT_WAY.inc()
        try:
            reply = await answers.submit_once(caller, sid, data, now)
        except Exception as e:
            status, body, retry = error_body(e)
            if status == 500:
                log.error("unhandled error on POST %s", scope["path"], exc_info=e)
            await _send(send, status, body, retry)
            return
        await _send(send, 200, reply)

    return handle


def install(app: Any) -> None:
    """Put the lean route in front of a Litestar app's request handling (lifespan,
    OpenAPI and every other route stay Litestar's)."""
    app.asgi_handler = lean_answers(app.asgi_handler)
