from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from services.common.migrations import sql_migration

ID = "2026-12-01T21:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "live sessions may hold each player's result until the question closes"

STATEMENTS = [
    "ALTER TABLE quiz_session ADD COLUMN hold_results boolean NOT NULL DEFAULT false",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, "quiz", DESCRIPTION, STATEMENTS)
