"""The one error family of the HTTP services: what went wrong, as the client is told.

A service module raises a subclass of ``ServiceError`` (no HTTP in sight); the app
factory (``services.common.web.create_app``) registers one handler that turns any
of them into the one JSON error body, ``{status_code, detail, extra?}``:

- ``status_code``: the class's, the HTTP status;
- ``detail``: the message, ending `` (field `name`)`` when ``field`` names the
  offending field, in which case ``extra`` is ``[{key, message}]`` as for the
  422 of a body that does not fit its Struct;
- ``headers``: sent with the answer (``Retry-After``, ``WWW-Authenticate``).

Each service's errors subclass it (``services.quiz.errors``, the IAM's in
``services.iam.service``, the board's ``UnknownSession``...); the status lives on
the class, the message on the class (``detail``) or the raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import asyncpg


class ServiceError(Exception):
    """Base: ``status_code`` is what the HTTP layer answers, ``detail`` what it says."""

    status_code: ClassVar[int] = 400
    detail: str = "Bad request"
    headers: Mapping[str, str] | None = None

    def __init__(
        self,
        detail: str | None = None,
        field: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ):
        message = type(self).detail if detail is None else detail
        super().__init__(message)
        self.detail = message
        self.field = field
        if headers is not None:
            self.headers = headers

    def message(self) -> str:
        """The body's ``detail``: the message, naming the field when there is one."""
        return f"{self.detail} (field `{self.field}`)" if self.field else self.detail

    def extra(self) -> list[dict[str, str]] | None:
        """The body's ``extra``: the field and its message, as for a body's 422."""
        return [{"key": self.field, "message": self.detail}] if self.field else None


def error_body(status: int, detail: str, extra: Any = None) -> dict[str, Any]:
    """The one JSON error body: ``{status_code, detail}``, plus ``extra`` when given."""
    body: dict[str, Any] = {"status_code": status, "detail": detail}
    if extra:
        body["extra"] = extra
    return body


RETRY_SOON = {"Retry-After": "1"}


class DatabaseUnavailable(ServiceError):
    """PostgreSQL cannot be reached now: 503, retry after a second."""

    status_code = 503
    detail = "Database unavailable, retry later"
    headers = RETRY_SOON


# Errors that mean "the database is not reachable now" (not a bug in a query); the
# app factory answers them as DatabaseUnavailable.
DB_DOWN_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,  # shutting down, cannot connect now
    asyncpg.TooManyConnectionsError,
)
