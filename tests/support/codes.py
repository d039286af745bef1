"""Join codes that no session holds, for tests that want a wrong code.

Other tests open sessions beside the one under test, so a random or fixed
6-digit guess could be some live session's code and join it.
"""

from __future__ import annotations

import random

import asyncpg

from services.common.settings import get_settings


async def free_codes(n: int) -> list[str]:
    """``n`` distinct codes that no session which has not ended holds now."""
    conn = await asyncpg.connect(get_settings().database_url)
    try:
        rows = await conn.fetch("SELECT code FROM quiz_session WHERE state <> 'ended'")
    finally:
        await conn.close()
    taken = {r["code"] for r in rows}
    codes: list[str] = []
    while len(codes) < n:
        code = f"{random.randrange(10**6):06d}"
        if code not in taken and code not in codes:
            codes.append(code)
    return codes
