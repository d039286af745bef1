"""What can go wrong in the quiz service, as exceptions the controllers map to HTTP.

The service modules raise these (no HTTP in sight); ``services.quiz.controllers``
turns each into the one JSON error shape with the status code named here.
"""

from __future__ import annotations

import asyncio

import asyncpg


class QuizError(Exception):
    """Base: ``status_code`` is what the HTTP layer answers."""

    status_code = 400

    def __init__(self, detail: str, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field


class Invalid(QuizError):
    """Well-formed input that breaks a rule; ``field`` names the offending field."""

    status_code = 422


class Forbidden(QuizError):
    """Wrong role, not the quiz's host, not a participant."""

    status_code = 403


class NotFound(QuizError):
    """Unknown quiz, session or join code."""

    status_code = 404


class Conflict(QuizError):
    """Wrong state: no open question, past the deadline, session ended."""

    status_code = 409


class Unavailable(QuizError):
    """PostgreSQL cannot be reached: the request can be retried."""

    status_code = 503


# Errors that mean "the database is not reachable now" (not a bug in a query).
DB_DOWN_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,  # shutting down, cannot connect now
    asyncpg.TooManyConnectionsError,
)
