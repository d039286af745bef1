"""Join codes cannot be guessed at speed: wrong codes are counted per client address.

A join code is 6 digits, so an address that could try codes without limit would
find an open session in minutes (the probe sent 209 wrong codes a second).
Each wrong code counts against the address in Redis (shared by every quiz
process) for ``join_code_window_s``; past ``join_code_misses`` the address gets
429 with Retry-After until the window ends, right codes included. nginx limits
the request rate per address on top of this. When Redis is down, the count is
skipped (joining matters more than the limit).
"""

from __future__ import annotations

import logging

from litestar import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.common.settings import get_settings
from services.quiz.errors import TooManyGuesses

log = logging.getLogger("quizrt.quiz.guessing")


def _key(address: str) -> str:
    return f"quizrt:join-misses:{address}"


def client_address(request: Request) -> str:
    """The client's address as nginx saw it (X-Real-IP is set by nginx, never passed on)."""
    return request.headers.get("x-real-ip") or (request.client.host if request.client else "-")


async def refuse_if_guessing(redis: Redis, address: str) -> None:
    """429 when the address tried too many wrong codes in the current window."""
    s = get_settings()
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.get(_key(address))
        pipe.ttl(_key(address))
        misses, ttl = await pipe.execute()
    except RedisError:
        return
    if misses is not None and int(misses) >= s.join_code_misses:
        retry = max(1, int(ttl)) if ttl and int(ttl) > 0 else s.join_code_window_s
        raise TooManyGuesses(headers={"Retry-After": str(retry)})


async def count_miss(redis: Redis, address: str) -> None:
    """One more wrong code from ``address`` (the window starts at its first miss)."""
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.incr(_key(address))
        pipe.expire(_key(address), get_settings().join_code_window_s, nx=True)
        await pipe.execute()
    except RedisError:
        log.warning("cannot count a wrong join code (Redis unavailable)")
