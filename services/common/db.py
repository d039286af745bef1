"""The PostgreSQL engine (Piccolo on an asyncpg pool) and the migration command.

python -m services.common.db migrate     apply every Piccolo migration
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import asynccontextmanager
from typing import Any

from piccolo.engine.postgres import PostgresEngine

from services.common.settings import get_settings

# extensions=(): the schema needs none, so a managed database without superuser works.
DB = PostgresEngine(config={"dsn": get_settings().database_url}, extensions=())


async def keep_session(conn: Any) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does (roll back
    a transaction left open, drop listeners).

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: one more round trip per checkout (per batch of
    answers, per request). No code here leaves session state behind: advisory locks
    are transaction-scoped, cursors live in transactions, nothing sets, listens or
    prepares for the session on a pooled connection.
    """


# The hot path's statements of this process (``hot``), prepared on every new pooled
# connection before it is first handed out.
_HOT: list[str] = []


def hot(sql: str) -> str:
    """Register ``sql`` as a hot-path statement of this process; returns it unchanged.

    A new PostgreSQL backend fills its catalog caches, and plans a statement, at the
    statement's first use: for the answer path's write, tens of milliseconds, paid
    by the first answers on each new connection (the first burst of a game). The
    pool's ``init`` prepares every hot statement on each new connection instead, which
    fills those caches. (asyncpg's ``prepare`` does not fill its own statement cache,
    so the first real use still parses the statement once, cheaply with the caches
    warm.)
    """
    if sql not in _HOT:
        _HOT.append(sql)
    return sql


async def _warm(conn: Any) -> None:
    """Prepare this process's hot statements on a new connection (none executed): the
    backend loads the catalogs they use."""
    for sql in _HOT:
        await conn.prepare(sql)


async def open_pool() -> None:
    """Start the process's connection pool (call once in the app's lifespan).

    ``db_pool_min`` connections open at once, each warmed (``hot``), and an idle
    connection is kept (asyncpg's default closes it after 5 minutes, so the first
    answers of a game after a quiet spell paid for new, cold connections).
    """
    s = get_settings()
    await DB.start_connection_pool(
        min_size=s.db_pool_min,
        max_size=s.db_pool_max,
        reset=keep_session,
        init=_warm,
        max_inactive_connection_lifetime=0,
    )


async def close_pool() -> None:
    await DB.close_connection_pool()


@asynccontextmanager
async def connection() -> Any:
    """An asyncpg connection from Piccolo's pool, for hand-written SQL on the hot path."""
    pool = DB.pool
    if pool is None:
        raise RuntimeError("the database pool is not open")
    async with pool.acquire() as conn:
        yield conn


async def ping() -> bool:
    try:
        async with connection() as conn:
            await asyncio.wait_for(conn.fetchval("select 1"), 2)
        return True
    except Exception:
        return False


async def migrate() -> None:
    from piccolo.apps.migrations.commands.forwards import run_forwards

    os.environ.setdefault("PICCOLO_CONF", "piccolo_conf")
    result = await run_forwards(app_name="all", migration_id="all")
    if not result.success:
        print(result.message, file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    if sys.argv[1:] == ["migrate"]:
        asyncio.run(migrate())
    else:
        raise SystemExit("usage: python -m services.common.db migrate")
