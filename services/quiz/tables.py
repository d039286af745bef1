"""Quiz tables (Piccolo). The DDL, with its unique keys, is in piccolo_migrations/.

PostgreSQL is the source of truth; Redis holds copies that can be rebuilt from here.
"""

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    BigSerial,
    Boolean,
    Bytea,
    Integer,
    Text,
    Timestamptz,
)
from piccolo.table import Table


class Quiz(Table, tablename="quiz"):
    id = UUID(primary_key=True)
    owner_id = UUID()
    title = Text()
    public = Boolean(default=False)
    # [{id, text, choices, answer, time_limit_s, points}]: content never changes after creation.
    questions = JSONB()
    created_at = Timestamptz()


class QuizSession(Table, tablename="quiz_session"):
    id = UUID(primary_key=True)
    quiz_id = UUID()
    host_id = UUID()
    mode = Text()  # live | self_paced
    state = Text()  # lobby | running | ended
    code = Text()  # 6 digits, unique among sessions not ended
    current_index = Integer(default=-1)  # live: the open (or last opened) question
    question_opened_ms = BigInt(null=True, default=None)
    deadline_ms = BigInt(null=True, default=None)
    created_ms = BigInt()
    ended_ms = BigInt(null=True, default=None)
    standing = Boolean(default=False)  # the public quiz's standing self-paced session
    board_dirty = Boolean(default=False)  # Redis missed a write: rebuild the board
    closed_index = Integer(default=-1)  # live: last question whose question_closed was sent
    hold_results = Boolean(default=False)  # live: results held until the question closes
    board_rebuilt = BigInt(default=0)  # version of the board's last rebuild


class SessionPlayer(Table, tablename="session_player"):
    """Unique (session_id, user_id)."""

    id = BigSerial(primary_key=True)
    session_id = UUID()
    user_id = UUID()
    nickname = Text()
    joined_ms = BigInt()
    score = Integer(default=0)
    reached_ms = BigInt()  # when the current score was reached, ms since session creation
    streak = Integer(default=0)
    last_index = Integer(default=-1)  # index of the last question answered
    correct_count = Integer(default=0)


class Handout(Table, tablename="handout"):
    """Self-paced: when a question was handed to a player (its clock).

    Unique per player and question.
    """

    id = BigSerial(primary_key=True)
    session_id = UUID()
    user_id = UUID()
    question_id = Text()
    question_index = Integer()
    handed_ms = BigInt()


class Answer(Table, tablename="answer"):
    """One row per accepted answer; unique (session_id, user_id, question_id)."""

    id = UUID(primary_key=True)
    session_id = UUID()
    user_id = UUID()
    question_id = Text()
    question_index = Integer()
    choice = Integer()
    correct = Boolean()
    points = Integer()
    elapsed_ms = Integer()
    score_after = Integer()
    answered_ms = BigInt()
    reply = JSONB()  # the exact first reply, returned again to a repeat


class Outbox(Table, tablename="outbox"):
    """Events written in the answer's transaction, published to Kafka by the relay."""

    id = BigSerial(primary_key=True)
    topic = Text()
    key = Text()
    payload = Bytea()
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None)
