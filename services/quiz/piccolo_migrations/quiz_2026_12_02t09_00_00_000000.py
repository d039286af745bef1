from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from services.common.migrations import sql_migration

ID = "2026-12-02T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "a board rebuild records its version, so answers it replaced are scored again"

STATEMENTS = [
    "ALTER TABLE quiz_session ADD COLUMN board_rebuilt bigint NOT NULL DEFAULT 0",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, "quiz", DESCRIPTION, STATEMENTS)
