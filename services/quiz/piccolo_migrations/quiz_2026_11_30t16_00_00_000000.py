from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from services.common.migrations import sql_migration

ID = "2026-11-30T16:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "live sessions: which question was closed (question_closed sent once)"

STATEMENTS = [
    # The index of the last live question whose question_closed was sent: the one
    # process that moves it from below current_index claims the close.
    "ALTER TABLE quiz_session ADD COLUMN closed_index integer NOT NULL DEFAULT -1",
    """CREATE INDEX quiz_session_live_deadline ON quiz_session (deadline_ms)
        WHERE mode = 'live' AND state = 'running'""",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, "quiz", DESCRIPTION, STATEMENTS)
