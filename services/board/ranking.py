"""Board arithmetic, writes and snapshot reads (Redis only), shared by the quiz
service, the leaderboard service and the socket.io tier.

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

import msgspec
from redis.asyncio import Redis

from contracts import LeaderboardEntry, LeaderboardSnapshot
from services.common.clock import now_ms
from services.common.redis import as_text, board_key, board_names_key, board_version_key

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

    ``write_scores`` for one player (one round trip). The write is absolute, so
    repeating it is harmless.
    """
    w = ScoreWrite(user_id, score, reached_ms, nickname or "")
    placed = (await write_scores(redis, {session_id: [w]}))[session_id][0]
    return placed.rank, placed.players, placed.version


# One session's share of a batch, atomically, each player exactly as ``write_score``
# alone would be, in order. ARGV: the first version of a new board, then per player
# (user id, composite, nickname or '', must write). A player that need not be written
# (no points) and is on the board is only ranked. Returns per player: rank (0-based),
# players, version (0 when this player was not written).
_WRITE_LUA = """
local out = {}
for i = 2, #ARGV, 4 do
  local user = ARGV[i]
  local version = 0
  if ARGV[i + 3] == '1' or not redis.call('ZSCORE', KEYS[1], user) then
    if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[3], user, ARGV[i + 2]) end
    redis.call('ZADD', KEYS[1], ARGV[i + 1], user)
    redis.call('SET', KEYS[2], ARGV[1], 'NX')
    version = redis.call('INCR', KEYS[2])
  end
  out[#out + 1] = redis.call('ZREVRANK', KEYS[1], user)
  out[#out + 1] = redis.call('ZCARD', KEYS[1])
  out[#out + 1] = version
end
return out
"""


class ScoreWrite(msgspec.Struct, frozen=True):
    """One player's new total in a batch (``must_write`` False: rank only, when the
    player is already on the board, e.g. an answer that earned no points)."""

    user_id: str
    score: int
    reached_ms: int
    nickname: str  # "" leaves the name as it is
    must_write: bool = True


class Placed(msgspec.Struct, frozen=True):
    """Where a ``ScoreWrite`` left the player: rank, players, and the board version the
    write produced (0 when nothing was written for this player)."""

    rank: int
    players: int
    version: int


async def write_scores(
    redis: Redis, writes: dict[str, list[ScoreWrite]]
) -> dict[str, list[Placed]]:
    """``write_score`` for a batch: many sessions, many players, one round trip.

    Each session's writes are one script call (atomic; each player ranked and given
    the version right after their own write, as one ``write_score`` after another
    would); the calls share one pipeline. Writes are absolute: repeating is harmless.
    """
    # EVAL, not EVALSHA: a pipeline holding a registered script first asks SCRIPT
    # EXISTS (a second round trip), and the body is small.
    pipe = redis.pipeline(transaction=False)
    order = list(writes)
    for sid in order:
        args: list[str | int] = [initial_version()]
        for w in writes[sid]:
            args += [w.user_id, composite(w.score, w.reached_ms), w.nickname, int(w.must_write)]
        keys = [board_key(sid), board_version_key(sid), board_names_key(sid)]
        pipe.eval(_WRITE_LUA, len(keys), *keys, *args)
    out: dict[str, list[Placed]] = {}
    for sid, res in zip(order, await pipe.execute(), strict=True):
        out[sid] = [
            Placed(rank=int(res[i]) + 1, players=int(res[i + 1]), version=int(res[i + 2]))
            for i in range(0, len(res), 3)
        ]
    return out


async def read_snapshot(
    redis: Redis, session_id: str, limit: int = 10
) -> LeaderboardSnapshot | None:
    """The top ``limit`` with the version that names exactly this state of the board
    (``read_snapshots`` for one session: one atomic read). None when the board does
    not exist in Redis (not created, or lost).
    """
    return (await read_snapshots(redis, [session_id], limit))[session_id]


# A board's player count and version, read together.
_PLAYERS_LUA = "return {redis.call('GET', KEYS[1]) or '0', redis.call('ZCARD', KEYS[2])}"


async def read_players(redis: Redis, session_id: str) -> tuple[int, int]:
    """(players, version) of a board, read atomically; (0, 0) when it is missing."""
    keys = [board_version_key(session_id), board_key(session_id)]
    version, players = await redis.eval(_PLAYERS_LUA, len(keys), *keys)
    return int(players), int(version)


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
            user_id=as_text(flat[2 * i]),
            nickname=as_text(names[i]) if names[i] else "",
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
    call per session), so one version always names one snapshot. EVAL with the body,
    as in ``write_scores``: a pipeline holding a registered script first asks SCRIPT
    EXISTS, a second round trip on every read.
    """
    pipe = redis.pipeline(transaction=False)
    for sid in session_ids:
        pipe.eval(_SNAPSHOT_LUA, 3, *snapshot_keys(sid), max(limit, 1))
    results = await pipe.execute()
    return {sid: parse_snapshot(sid, res) for sid, res in zip(session_ids, results, strict=True)}
