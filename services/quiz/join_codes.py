"""New sessions with a 6-digit join code, unique among sessions that have not ended.

The unique partial index ``quiz_session_code`` is the arbiter: a code already in
use makes the insert do nothing, and another random code is tried.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

ATTEMPTS = 20


def random_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


async def insert_session(
    conn: Any,
    quiz_id: uuid.UUID,
    host_id: uuid.UUID,
    mode: str,
    state: str,
    created_ms: int,
    *,
    standing: bool = False,
) -> tuple[uuid.UUID, str]:
    """Insert a session; returns (id, code). Raises RuntimeError if no free code was found."""
    session_id = uuid.uuid4()
    for _ in range(ATTEMPTS):
        code = random_code()
        inserted = await conn.fetchval(
            "INSERT INTO quiz_session (id, quiz_id, host_id, mode, state, code, created_ms,"
            " standing) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (code) WHERE state <> 'ended' DO NOTHING RETURNING id",
            session_id,
            quiz_id,
            host_id,
            mode,
            state,
            code,
            created_ms,
            standing,
        )
        if inserted is not None:
            return session_id, code
    raise RuntimeError("no free join code found")
