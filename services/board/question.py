"""A question's public form: the `question` event, never the answer.

Built here only: the quiz service sends it when a live question opens, caches it in
the session hash and answers ``GET .../question`` with it; the socket tier's join
builds it from PostgreSQL when Redis does not have the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from contracts import QuestionOpened


class PublicQuestion(Protocol):
    """What the public form shows of a question (whatever else it holds, e.g. its
    answer, is never read)."""

    @property
    def id(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def choices(self) -> list[str]: ...
    @property
    def time_limit_s(self) -> int: ...


class QuizQuestions(Protocol):
    """A quiz's questions in order, and how many there are."""

    @property
    def questions(self) -> Sequence[PublicQuestion]: ...
    @property
    def count(self) -> int: ...


class StoredQuestion(msgspec.Struct, frozen=True):
    """A question as ``quiz.questions`` stores it, decoded without its answer."""

    id: str
    text: str
    choices: list[str]
    time_limit_s: int


def question_opened(
    session_id: str,
    question: PublicQuestion,
    index: int,
    count: int,
    deadline_ms: int,
    now: int,
) -> QuestionOpened:
    """The `question` event of question ``index`` (of ``count``) of a session."""
    return QuestionOpened(
        session_id=session_id,
        question_id=question.id,
        index=index,
        count=count,
        text=question.text,
        choices=question.choices,
        time_limit_s=question.time_limit_s,
        deadline_ms=deadline_ms,
        server_time_ms=now,
    )


def question_event(
    session_id: str, quiz: QuizQuestions, index: int, deadline_ms: int, now: int
) -> QuestionOpened:
    """The `question` event of a live question: never the answer."""
    return question_opened(session_id, quiz.questions[index], index, quiz.count, deadline_ms, now)
