"""What can go wrong in the quiz service: the quiz's members of the one error family.

The service modules raise these (no HTTP in sight); the app factory's one handler
(``services.common.web``) turns each into the JSON error body with the status
named here (see ``services.common.errors``).
"""

from __future__ import annotations

from services.common.errors import DB_DOWN_ERRORS, RETRY_SOON, ServiceError

__all__ = [
    "DB_DOWN_ERRORS",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "QuizError",
    "TooManyGuesses",
    "Unavailable",
]


class QuizError(ServiceError):
    """Base of the quiz service's errors; ``field`` names the offending field."""


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


class TooManyGuesses(QuizError):
    """Too many wrong join codes from one address; ``headers`` carry Retry-After."""

    status_code = 429
    detail = "Too many wrong join codes from this address, retry later"


class Unavailable(QuizError):
    """The request can be retried in a second (PostgreSQL busy or unreachable)."""

    status_code = 503
    headers = RETRY_SOON
