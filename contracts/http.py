"""HTTP request and response bodies (``docs/protocol.md``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "AdvanceResult",
    "AnswerIn",
    "AnswerRecord",
    "AnswerResult",
    "ErrorBody",
    "GuestIn",
    "JoinIn",
    "JoinResult",
    "LeaderboardEntry",
    "LeaderboardSnapshot",
    "LoginIn",
    "Mode",
    "Nickname",
    "PlayerRank",
    "PlayerResult",
    "QuestionIn",
    "QuestionOut",
    "QuizCreated",
    "QuizDetail",
    "QuizIn",
    "QuizList",
    "QuizSummary",
    "RefreshIn",
    "Role",
    "SessionCreated",
    "SessionIn",
    "SessionResults",
    "State",
    "TokenPair",
    "UserIn",
    "UserOut",
]

Role = Literal["player", "host"]
Mode = Literal["live", "self_paced"]
State = Literal["lobby", "running", "ended"]

# Trimmed by the services before this check; 1-24 printable characters.
Nickname = Annotated[str, Meta(min_length=1, max_length=24, pattern=r"^[^\x00-\x1f\x7f]+$")]
Username = Annotated[str, Meta(min_length=3, max_length=40, pattern=r"^[A-Za-z0-9_.@-]+$")]
Password = Annotated[str, Meta(min_length=8, max_length=128)]
# PostgreSQL text cannot hold NUL: every string that may reach a column refuses it
# here (422), before asyncpg would fail on it.
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=NO_NUL)]
Title = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
QuestionText = Annotated[str, Meta(min_length=1, max_length=500, pattern=NO_NUL)]
Choice = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
JoinCode = Annotated[str, Meta(min_length=1, max_length=12, pattern=NO_NUL)]
LoginName = Annotated[str, Meta(min_length=1, max_length=40, pattern=NO_NUL)]


class _In(Struct, forbid_unknown_fields=True):
    """Request bodies: unknown fields are refused, so typos surface as 422."""


# --------------------------------------------------------------------------- identity


class GuestIn(_In):
    nickname: Nickname


class UserIn(_In):
    username: Username
    password: Password
    nickname: Nickname | None = None


class LoginIn(_In):
    username: LoginName
    password: Annotated[str, Meta(min_length=1, max_length=128)]


class RefreshIn(_In):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=200)]


class UserOut(Struct):
    id: str
    nickname: str
    role: Role
    username: str | None = None


class TokenPair(Struct):
    access_token: str
    refresh_token: str
    expires_in: int
    user: UserOut
    token_type: str = "Bearer"


# --------------------------------------------------------------------------- quizzes


class QuestionIn(_In):
    text: QuestionText
    choices: Annotated[list[Choice], Meta(min_length=2, max_length=6)]
    answer: Annotated[int, Meta(ge=0, le=5)]
    time_limit_s: Annotated[int, Meta(ge=5, le=120)] = 20
    points: Annotated[int, Meta(ge=0, le=10000)] = 1000


class QuizIn(_In):
    title: Title
    questions: Annotated[list[QuestionIn], Meta(min_length=1, max_length=100)]
    public: bool = False


class QuizCreated(Struct):
    id: str
    title: str
    question_count: int
    open_session_id: str | None = None


class QuizSummary(Struct):
    id: str
    title: str
    question_count: int
    open_session_id: str | None


class QuizList(Struct):
    items: list[QuizSummary]


class QuizDetail(Struct):
    """A quiz with its answer key: only for its host."""

    id: str
    title: str
    public: bool
    questions: list[QuestionIn]
    open_session_id: str | None = None
    # The id of each question, in order (answers and results name questions by id).
    question_ids: list[str] = []


class SessionIn(_In):
    quiz_id: Id
    mode: Mode = "live"
    # Live only: hold each player's result (reply and board) until the question
    # closes, so throwaway accounts cannot learn the answer while it is open.
    hold_results: bool = False


class SessionCreated(Struct):
    id: str
    code: str
    mode: Mode
    state: State
    quiz_id: str = ""
    hold_results: bool = False


class JoinIn(_In):
    code: JoinCode | None = None
    session_id: Id | None = None


class JoinResult(Struct):
    session_id: str
    mode: Mode
    state: State
    question_count: int
    title: str = ""


class AdvanceResult(Struct):
    state: State
    question_index: int


class QuestionOut(Struct):
    """A question as a player sees it: never the answer."""

    question_id: str
    index: int
    count: int
    text: str
    choices: list[str]
    time_limit_s: int
    deadline_ms: int
    server_time_ms: int
    answered: bool = False
    session_id: str = ""


class AnswerIn(_In):
    question_id: Id
    choice: Annotated[int, Meta(ge=0, le=5)]


class AnswerResult(Struct):
    question_id: str
    correct: bool
    points: int
    score: int
    rank: int
    streak: int = 0
    elapsed_ms: int = 0
    # The board version this answer's write produced (0: the board did not change or
    # the write missed Redis). The first `leaderboard` event with a version at least
    # this one reflects the answer: load tests time answer -> leaderboard with it.
    version: int = 0
    # A session with hold_results, question still open: correct/points/rank are
    # withheld (false/0/0, score as before) until `question_closed`.
    held: bool = False


class AnswerRecord(Struct):
    question_id: str
    choice: int
    correct: bool
    points: int
    elapsed_ms: int


class PlayerResult(Struct):
    rank: int
    user_id: str
    nickname: str
    score: int
    answers: list[AnswerRecord]


class SessionResults(Struct):
    session_id: str
    quiz_id: str
    state: State
    players: list[PlayerResult]


# --------------------------------------------------------------------------- leaderboard


class LeaderboardEntry(Struct, array_like=False):
    rank: int
    user_id: str
    nickname: str
    score: int


class LeaderboardSnapshot(Struct):
    """Top-N of a session. ``version`` grows with every change of the board."""

    session_id: str
    version: int
    players: int
    entries: list[LeaderboardEntry]


class PlayerRank(Struct):
    session_id: str
    user_id: str
    rank: int
    score: int
    players: int


# --------------------------------------------------------------------------- errors


class ErrorBody(Struct):
    """Every error answer (services and nginx alike): status and a readable detail.

    ``extra`` lists validation problems (``[{key, message, source}]``) when there are any.
    """

    status_code: int
    detail: str
    extra: list[dict[str, str]] | dict[str, str] | None = None


def encode(obj: object) -> bytes:
    return msgspec.json.encode(obj)
