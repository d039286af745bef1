from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from services.common.migrations import sql_migration

ID = "2026-11-30T15:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "quizzes, sessions, players, answers, outbox"

STATEMENTS = [
    """CREATE TABLE quiz (
        id uuid PRIMARY KEY,
        owner_id uuid NOT NULL,
        title text NOT NULL,
        public boolean NOT NULL DEFAULT false,
        questions jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX quiz_public ON quiz (created_at DESC) WHERE public",
    """CREATE TABLE quiz_session (
        id uuid PRIMARY KEY,
        quiz_id uuid NOT NULL REFERENCES quiz(id),
        host_id uuid NOT NULL,
        mode text NOT NULL CHECK (mode IN ('live', 'self_paced')),
        state text NOT NULL CHECK (state IN ('lobby', 'running', 'ended')),
        code text NOT NULL,
        current_index integer NOT NULL DEFAULT -1,
        question_opened_ms bigint,
        deadline_ms bigint,
        created_ms bigint NOT NULL,
        ended_ms bigint,
        standing boolean NOT NULL DEFAULT false,
        board_dirty boolean NOT NULL DEFAULT false
    )""",
    "CREATE UNIQUE INDEX quiz_session_code ON quiz_session (code) WHERE state <> 'ended'",
    """CREATE UNIQUE INDEX quiz_session_standing ON quiz_session (quiz_id)
        WHERE standing AND state <> 'ended'""",
    "CREATE INDEX quiz_session_dirty ON quiz_session (id) WHERE board_dirty",
    """CREATE TABLE session_player (
        id bigserial PRIMARY KEY,
        session_id uuid NOT NULL REFERENCES quiz_session(id),
        user_id uuid NOT NULL,
        nickname text NOT NULL,
        joined_ms bigint NOT NULL,
        score integer NOT NULL DEFAULT 0,
        reached_ms bigint NOT NULL,
        streak integer NOT NULL DEFAULT 0,
        last_index integer NOT NULL DEFAULT -1,
        correct_count integer NOT NULL DEFAULT 0,
        UNIQUE (session_id, user_id)
    )""",
    """CREATE TABLE handout (
        id bigserial PRIMARY KEY,
        session_id uuid NOT NULL,
        user_id uuid NOT NULL,
        question_id text NOT NULL,
        question_index integer NOT NULL,
        handed_ms bigint NOT NULL,
        UNIQUE (session_id, user_id, question_id)
    )""",
    """CREATE TABLE answer (
        id uuid PRIMARY KEY,
        session_id uuid NOT NULL,
        user_id uuid NOT NULL,
        question_id text NOT NULL,
        question_index integer NOT NULL,
        choice integer NOT NULL,
        correct boolean NOT NULL,
        points integer NOT NULL,
        elapsed_ms integer NOT NULL,
        score_after integer NOT NULL,
        answered_ms bigint NOT NULL,
        reply jsonb NOT NULL,
        UNIQUE (session_id, user_id, question_id)
    )""",
    "CREATE INDEX answer_question ON answer (session_id, question_id)",
    """CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        topic text NOT NULL,
        key text NOT NULL,
        payload bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        sent_at timestamptz
    )""",
    "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, "quiz", DESCRIPTION, STATEMENTS)
