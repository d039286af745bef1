"""Quiz content: authoring, the public list, the host's view, and the content cache.

Content never changes after creation, so every process keeps parsed quizzes in
memory (``load_quiz``): the hot path reads the answer key without a query. Session
state is never cached here; it lives in PostgreSQL (and copies in Redis).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Any

import msgspec

from contracts import QuestionIn, QuizCreated, QuizDetail, QuizIn, QuizList, QuizSummary
from services.common.clock import now_ms
from services.common.ids import canonical_uuid
from services.quiz.errors import Forbidden, Invalid, NotFound
from services.quiz.join_codes import insert_session

CACHE_MAX = 10_000


class Question(msgspec.Struct, frozen=True):
    """One question as stored in ``quiz.questions`` (with its answer)."""

    id: str
    text: str
    choices: list[str]
    answer: int
    time_limit_s: int
    points: int


class QuizContent(msgspec.Struct, frozen=True):
    """A parsed quiz; ``index_of`` maps question id -> position."""

    id: str
    owner_id: str
    title: str
    public: bool
    questions: list[Question]
    index_of: dict[str, int]

    @property
    def count(self) -> int:
        return len(self.questions)


_questions = msgspec.json.Decoder(list[Question])
_cache: OrderedDict[str, QuizContent] = OrderedDict()


def _content(row: Any) -> QuizContent:
    questions = _questions.decode(row["questions"])
    return QuizContent(
        id=str(row["id"]),
        owner_id=str(row["owner_id"]),
        title=row["title"],
        public=row["public"],
        questions=questions,
        index_of={q.id: i for i, q in enumerate(questions)},
    )


def _remember(quiz: QuizContent) -> QuizContent:
    _cache[quiz.id] = quiz
    if len(_cache) > CACHE_MAX:
        _cache.popitem(last=False)
    return quiz


async def load_quiz(conn: Any, quiz_id: uuid.UUID | str) -> QuizContent | None:
    """The quiz's content from the process cache, or from PostgreSQL once."""
    key = str(quiz_id)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    row = await conn.fetchrow(
        "SELECT id, owner_id, title, public, questions::text AS questions FROM quiz WHERE id = $1",
        uuid.UUID(key),
    )
    return _remember(_content(row)) if row else None


def check_quiz(data: QuizIn) -> None:
    """Rules the Struct cannot express; raises Invalid naming the field."""
    for i, q in enumerate(data.questions):
        if q.answer >= len(q.choices):
            raise Invalid(
                f"answer must be the index of one of the {len(q.choices)} choices",
                field=f"questions[{i}].answer",
            )


async def create_quiz(conn: Any, owner_id: str, data: QuizIn) -> QuizCreated:
    """Store a quiz (each question gets an id); a public quiz gets its standing
    self-paced session in the same transaction."""
    check_quiz(data)
    quiz_id = uuid.uuid4()
    questions = [
        Question(
            id=uuid.uuid4().hex[:12],
            text=q.text,
            choices=list(q.choices),
            answer=q.answer,
            time_limit_s=q.time_limit_s,
            points=q.points,
        )
        for q in data.questions
    ]
    open_session_id = None
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO quiz (id, owner_id, title, public, questions) VALUES ($1, $2, $3, $4,"
            " $5::jsonb)",
            quiz_id,
            uuid.UUID(owner_id),
            data.title,
            data.public,
            msgspec.json.encode(questions).decode(),
        )
        if data.public:
            sid, _ = await insert_session(
                conn, quiz_id, uuid.UUID(owner_id), "self_paced", "running", now_ms(), standing=True
            )
            open_session_id = str(sid)
    _remember(
        QuizContent(
            id=str(quiz_id),
            owner_id=owner_id,
            title=data.title,
            public=data.public,
            questions=questions,
            index_of={q.id: i for i, q in enumerate(questions)},
        )
    )
    return QuizCreated(
        id=str(quiz_id),
        title=data.title,
        question_count=len(questions),
        open_session_id=open_session_id,
    )


async def list_public(conn: Any, limit: int = 100) -> QuizList:
    """Public quizzes, newest first, with their standing session; never the answers."""
    rows = await conn.fetch(
        "SELECT q.id, q.title, jsonb_array_length(q.questions) AS n, s.id AS open_session_id"
        " FROM quiz q LEFT JOIN quiz_session s"
        "   ON s.quiz_id = q.id AND s.standing AND s.state <> 'ended'"
        " WHERE q.public ORDER BY q.created_at DESC LIMIT $1",
        limit,
    )
    return QuizList(
        items=[
            QuizSummary(
                id=str(r["id"]),
                title=r["title"],
                question_count=r["n"],
                open_session_id=str(r["open_session_id"]) if r["open_session_id"] else None,
            )
            for r in rows
        ]
    )


async def quiz_detail(conn: Any, caller_id: str, quiz_id: str) -> QuizDetail:
    """The quiz with its answer key, for its host only."""
    quiz = await load_quiz(conn, parse_id(quiz_id, "quiz"))
    if quiz is None:
        raise NotFound("No such quiz")
    if quiz.owner_id != caller_id:
        raise Forbidden("Only the quiz's host may read its answers")
    open_id = await conn.fetchval(
        "SELECT id FROM quiz_session WHERE quiz_id = $1 AND standing AND state <> 'ended'",
        uuid.UUID(quiz.id),
    )
    return QuizDetail(
        id=quiz.id,
        title=quiz.title,
        public=quiz.public,
        questions=[
            QuestionIn(
                text=q.text,
                choices=q.choices,
                answer=q.answer,
                time_limit_s=q.time_limit_s,
                points=q.points,
            )
            for q in quiz.questions
        ],
        open_session_id=str(open_id) if open_id else None,
        question_ids=[q.id for q in quiz.questions],
    )


def parse_id(value: str, what: str) -> uuid.UUID:
    """A client's id as a UUID; an id that cannot exist, or is spelled otherwise
    than canonically (upper case, no dashes, braces, urn:uuid:), is unknown (404)."""
    parsed = canonical_uuid(value)
    if parsed is None:
        raise NotFound(f"No such {what}")
    return parsed
