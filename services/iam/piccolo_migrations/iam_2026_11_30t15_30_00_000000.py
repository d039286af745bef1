from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from services.common.migrations import sql_migration

ID = "2026-11-30T15:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "users and refresh tokens"

STATEMENTS = [
    """CREATE TABLE iam_user (
        id uuid PRIMARY KEY,
        username text UNIQUE,
        password_hash text,
        nickname text NOT NULL,
        role text NOT NULL CHECK (role IN ('player', 'host')),
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE iam_refresh_token (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES iam_user(id) ON DELETE CASCADE,
        family_id uuid NOT NULL,
        token_hash text NOT NULL UNIQUE,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        revoked boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX iam_refresh_token_family ON iam_refresh_token (family_id)",
]


async def forwards() -> MigrationManager:
    return sql_migration(ID, "iam", DESCRIPTION, STATEMENTS)
