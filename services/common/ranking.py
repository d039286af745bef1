"""Leaderboard arithmetic and reads, shared by the quiz service, the leaderboard
service and the socket.io tier.

One Redis sorted set per session. Its score packs the points and the moment the
player reached them into one exact integer below 2**53 (a double's exact range):

    composite = score * 2**32 + (2**32 - 1 - reached)

where ``reached`` is milliseconds since the session was created (capped at
2**32 - 1, about 49 days). Higher points rank first; on equal points the earlier
``reached`` gives the larger composite, so who reached the score first ranks
higher. ``score`` is capped by the quiz limits (100 questions x (10,000 points +
500 streak bonus) = 1,050,000 < 2**21), so the composite stays below 2**53.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from contracts import LeaderboardEntry, LeaderboardSnapshot
from services.common.redis import board_key, board_names_key, board_version_key

REACHED_BITS = 32
REACHED_MAX = (1 << REACHED_BITS) - 1
SCORE_MAX = (1 << 21) - 1


def composite(score: int, reached_ms: int) -> int:
    """Sorted-set score of ``score`` points reached ``reached_ms`` after session start."""
    if not 0 <= score <= SCORE_MAX:
        raise ValueError(f"score out of range: {score}")
    reached = min(max(reached_ms, 0), REACHED_MAX)
    return (score << REACHED_BITS) + (REACHED_MAX - reached)


def points_of(composite_score: float) -> int:
    """The points packed in a composite."""
    return int(composite_score) >> REACHED_BITS


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def initial_version() -> int:
    """First version of a board, and the one after a rebuild.

    Taken from the clock (ms * 1000) so that a board rebuilt after Redis lost its
    data still continues above every version handed out before (fewer than 1,000
    changes per millisecond), and stays below 2**53 for JavaScript clients.
    """
    return now_ms() * 1000


async def write_score(
    redis: Redis,
    session_id: str,
    user_id: str,
    score: int,
    reached_ms: int,
    *,
    nickname: str | None = None,
) -> tuple[int, int, int]:
    """Set a player's total, bump the version; returns (rank, players, version).

    One pipeline (one round trip). The write is absolute, so repeating it is harmless.
    """
    key = board_key(session_id)
    vkey = board_version_key(session_id)
    pipe = redis.pipeline(transaction=True)
    if nickname is not None:
        pipe.hset(board_names_key(session_id), user_id, nickname)
    pipe.zadd(key, {user_id: composite(score, reached_ms)})
    pipe.set(vkey, initial_version(), nx=True)
    pipe.incr(vkey)
    pipe.zrevrank(key, user_id)
    pipe.zcard(key)
    res = await pipe.execute()
    rank, players, version = res[-2], res[-1], res[-3]
    return (int(rank) + 1 if rank is not None else players), int(players), int(version)


async def read_snapshot(
    redis: Redis, session_id: str, limit: int = 10
) -> LeaderboardSnapshot | None:
    """The top ``limit`` with the version that names exactly this state of the board
    (``read_snapshots`` for one session: one atomic read). None when the board does
    not exist in Redis (not created, or lost).
    """
    return (await read_snapshots(redis, [session_id], limit))[session_id]


async def read_rank(redis: Redis, session_id: str, user_id: str) -> tuple[int, int, int] | None:
    """(rank, score, players) of one player, or None when not on the board."""
    key = board_key(session_id)
    pipe = redis.pipeline(transaction=False)
    pipe.zrevrank(key, user_id)
    pipe.zscore(key, user_id)
    pipe.zcard(key)
    rank, sc, players = await pipe.execute()
    if rank is None or sc is None:
        return None
    return int(rank) + 1, points_of(sc), int(players)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


# One session's snapshot in one atomic step: version, top N with scores, player
# count and the nicknames of the top N. A script (not MULTI) so that several
# sessions can share one pipelined round trip and each stays on its own cluster slot.
# SNAPSHOT_LUA_FUNCTION is the function alone, for scripts that read more (the join).
SNAPSHOT_LUA_FUNCTION = """
local function snapshot(vkey, zkey, nkey, limit)
  local ver = redis.call('GET', vkey)
  if not ver then return false end
  local top = redis.call('ZREVRANGE', zkey, 0, limit - 1, 'WITHSCORES')
  local players = redis.call('ZCARD', zkey)
  local names = {}
  if #top > 0 then
    local ids = {}
    for i = 1, #top, 2 do ids[#ids + 1] = top[i] end
    names = redis.call('HMGET', nkey, unpack(ids))
  end
  return {ver, players, top, names}
end
"""
_SNAPSHOT_LUA = (
    SNAPSHOT_LUA_FUNCTION + "return snapshot(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]))"
)


def snapshot_keys(session_id: str) -> list[str]:
    """The keys ``SNAPSHOT_LUA_FUNCTION`` reads, in its argument order."""
    return [board_version_key(session_id), board_key(session_id), board_names_key(session_id)]


def parse_snapshot(session_id: str, res: list | None) -> LeaderboardSnapshot | None:
    """A snapshot from the script's reply; None when the board is missing in Redis."""
    if not res:
        return None
    version, players, flat, names = res
    entries = [
        LeaderboardEntry(
            rank=i + 1,
            user_id=_s(flat[2 * i]),
            nickname=_s(names[i]) if names[i] else "",
            score=points_of(float(flat[2 * i + 1])),
        )
        for i in range(len(flat) // 2)
    ]
    return LeaderboardSnapshot(
        session_id=session_id, version=int(version), players=int(players), entries=entries
    )


async def read_snapshots(
    redis: Redis, session_ids: list[str], limit: int = 10
) -> dict[str, LeaderboardSnapshot | None]:
    """Snapshots of several sessions in one round trip; None for a board missing in Redis.

    Each session's version, entries and player count are read atomically (one script
    call per session), so one version always names one snapshot.
    """
    script = redis.register_script(_SNAPSHOT_LUA)
    pipe = redis.pipeline(transaction=False)
    for sid in session_ids:
        await script(keys=snapshot_keys(sid), args=[max(limit, 1)], client=pipe)
    results = await pipe.execute()
    return {sid: parse_snapshot(sid, res) for sid, res in zip(session_ids, results, strict=True)}
