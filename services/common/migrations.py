"""Helper for Piccolo migrations written as SQL: one statement per step."""

from __future__ import annotations

from collections.abc import Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table


class _Raw(Table):
    pass


def sql_migration(
    migration_id: str, app_name: str, description: str, statements: Sequence[str]
) -> MigrationManager:
    """A MigrationManager that runs ``statements`` in order."""
    manager = MigrationManager(
        migration_id=migration_id, app_name=app_name, description=description
    )

    async def run() -> None:
        for sql in statements:
            await _Raw.raw(sql)

    manager.add_raw(run)
    return manager
