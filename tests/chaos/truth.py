"""The three-way comparison after a game.

1. what each player's client saw accepted (the first 200 reply per question),
2. the rows in PostgreSQL (``answer`` table, and ``session_player.score``),
3. the final leaderboard: the Redis sorted set (``read_snapshot``), the HTTP
   leaderboard API, the newest TOP_10 record in Kafka, and the newest
   ``leaderboard`` snapshot each client received.

They must agree exactly: every accepted answer stored once, nothing stored that
no client saw accepted, every board showing each player's sum of points.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg
from aiokafka import TopicPartition

from contracts import decode_top10
from services.board.ranking import read_snapshot
from services.common.kafka import make_consumer
from services.common.redis import redis_from_url
from services.common.settings import get_settings
from tests.chaos.game import Game


@dataclass
class Stored:
    """What PostgreSQL holds for one session."""

    answers: dict[tuple[str, str], int]  # (user_id, question_id) -> points
    rows: int  # answer rows (the unique key makes rows == len(answers))
    scores: dict[str, int]  # session_player.score


async def read_postgres(database_url: str, session_id: str) -> Stored:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "select user_id::text as u, question_id as q, points from answer"
            " where session_id = $1::uuid",
            session_id,
        )
        players = await conn.fetch(
            "select user_id::text as u, score from session_player where session_id = $1::uuid",
            session_id,
        )
    finally:
        await conn.close()
    return Stored(
        answers={(r["u"], r["q"]): int(r["points"]) for r in rows},
        rows=len(rows),
        scores={r["u"]: int(r["score"]) for r in players},
    )


async def read_redis_board(redis_url: str, session_id: str) -> tuple[dict[str, int], int] | None:
    """(user_id -> score, players) from the session's sorted set, or None when missing."""
    r = redis_from_url(redis_url, socket_timeout=3)
    try:
        snap = await read_snapshot(r, session_id, limit=10_000)
    finally:
        await r.aclose()
    if snap is None:
        return None
    return {e.user_id: e.score for e in snap.entries}, snap.players


async def read_http_board(game: Game, limit: int = 100) -> tuple[dict[str, int], int] | str:
    """(user_id -> score, players) from the leaderboard HTTP API, read as the host;
    the status and body when it did not answer 200."""
    r = await game.http.get(
        f"/api/leaderboard/sessions/{game.session_id}/top",
        params={"limit": limit},
        headers=game.host_headers,
    )
    if r.status_code != 200:
        return f"{r.status_code} {r.text[:200]}"
    body = r.json()
    return {e["user_id"]: int(e["score"]) for e in body["entries"]}, int(body["players"])


async def read_top10(session_id: str, timeout: float = 15) -> tuple[dict[str, int], int] | str:
    """(user_id -> score, players) of the newest TOP_10 record of the session (read
    from the start of the compacted topic), or why there is none."""
    topic = get_settings().topic_top10
    consumer = make_consumer(group=None, enable_auto_commit=False)
    await consumer.start()
    best = None
    try:
        async with asyncio.timeout(timeout):
            # services.common.kafka creates TOP_10 with this many partitions.
            parts = range(get_settings().score_change_partitions)
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for rec in records:
                        if rec.key != session_id.encode():
                            continue
                        snap = decode_top10(rec.value)
                        if best is None or snap.version > best.version:
                            best = snap
    except TimeoutError:
        return f"could not read {topic} within {timeout:.0f}s"
    finally:
        await consumer.stop()
    if best is None:
        return f"no {topic} record for the session"
    return {e.user_id: e.score for e in best.entries}, best.players


def board_problems(
    name: str, board: dict[str, int], players: int, expected: dict[str, int], top: int = 10
) -> list[str]:
    """Why ``board`` (possibly a top-N) disagrees with the expected totals; [] if it agrees.

    A top-N must hold exactly the N best expected scores (as a multiset, so ties at
    the cut are fine) and each entry must carry its player's expected total.
    """
    problems = []
    if players != len(expected):
        problems.append(f"{name}: players {players}, expected {len(expected)}")
    for user, score in board.items():
        if user not in expected:
            problems.append(f"{name}: unknown player {user} on the board")
        elif score != expected[user]:
            problems.append(f"{name}: {user} has {score}, accepted answers sum to {expected[user]}")
    best = sorted(expected.values(), reverse=True)[: len(board)]
    if sorted(board.values(), reverse=True) != best and not problems:
        problems.append(f"{name}: top scores {sorted(board.values(), reverse=True)} != {best}")
    if len(board) < min(len(expected), top):
        problems.append(f"{name}: {len(board)} entries, expected {min(len(expected), top)}")
    return problems


@dataclass
class Verdict:
    """The outcome of a game under a fault, with the numbers for the report."""

    sent: int = 0  # answer POSTs (duplicates included)
    distinct: int = 0  # distinct answers attempted
    accepted: int = 0
    stored: int = 0
    counted: int = 0
    accepted_points: int = 0
    board_points: int = 0
    events: int = 0
    leaderboard_events: int = 0
    reconnects: int = 0
    retried: int = 0
    server_errors: int = 0
    refused: int = 0
    undecided: int = 0
    redis_correct_s: float | None = None
    events_correct_s: float | None = None
    max_lag_s: float | None = None  # slowest accepted answer -> a snapshot reflecting it
    p50_lag_s: float | None = None
    unreflected: int = 0  # accepted answers no snapshot at that client ever reflected
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def absorb(self, other: Verdict, label: str) -> None:
        """Add another game's counts and problems (labelled) to this verdict."""
        for name in (
            "sent", "distinct", "accepted", "stored", "counted", "accepted_points",
            "board_points", "events", "leaderboard_events", "reconnects", "retried",
            "server_errors", "refused", "undecided", "unreflected",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.max_lag_s is not None:
            self.max_lag_s = max(self.max_lag_s or 0.0, other.max_lag_s)
        self.problems += [f"{label}: {p}" for p in other.problems]


def _client_problems(game: Game) -> list[str]:
    problems = []
    for p in game.players:
        for m in p.reply_mismatches:
            problems.append(f"{p.nickname}: a repeated answer got a different reply: {m}")
        for s in p.foreign:
            problems.append(f"{p.nickname}: received another session's {s.name}: {s.payload}")
        scores = sorted(int(a["score"]) for a in p.accepted.values())
        if scores and scores[-1] != p.accepted_points:
            problems.append(
                f"{p.nickname}: last reply says total {scores[-1]}, accepted points sum to"
                f" {p.accepted_points}"
            )
    return problems


async def wait_until_correct(
    game: Game,
    redis_url: str,
    since: float,
    timeout: float,
) -> tuple[float | None, float | None]:
    """Wait until Redis and every client's newest snapshot show the expected totals,
    and every accepted answer's client holds a snapshot of that answer's version or
    newer (``answer_lags``).

    The versions matter on their own: a retried answer (its first attempt put the
    same total on the board, then its commit failed) gets a higher version with the
    same content, and the consumer holds back a snapshot whose top 10 did not change
    for a few ticks, so the right content can be on every client before that
    version is. Returns (seconds until Redis was right, seconds until the last client
    was right), both counted from ``since`` (a time.monotonic() value); None if never
    within ``timeout``. The client time comes from when the right snapshot arrived.
    """
    expected = game.expected_scores()
    deadline = time.monotonic() + timeout
    redis_t: float | None = None
    while time.monotonic() < deadline:
        if redis_t is None:
            try:
                board = await read_redis_board(redis_url, game.session_id)
            except Exception:
                board = None
            if board is not None and not board_problems("redis", *board, expected):
                redis_t = time.monotonic()
        if (
            redis_t is not None
            and _clients_correct_at(game, expected) is not None
            and not answer_lags(game)[1]
        ):
            break
        await asyncio.sleep(0.1)
    clients_t = _clients_correct_at(game, expected)
    return (
        None if redis_t is None else max(0.0, redis_t - since),
        None if clients_t is None else max(0.0, clients_t - since),
    )


def _clients_correct_at(game: Game, expected: dict[str, int]) -> float | None:
    """When the last client got a correct newest snapshot; None if one has none."""
    latest = 0.0
    for p in game.players:
        if p.best is None or board_problems("event", p.best.scores, p.best.players, expected):
            return None
        # The first snapshot carrying this (final) version: when the client got it.
        latest = max(latest, min(s.t for s in p.snapshots if s.version == p.best.version))
    return latest


def answer_lags(game: Game) -> tuple[list[float], int]:
    """Per accepted answer that changed the board (reply ``version`` > 0): seconds from
    its 200 reply until its player's client got a snapshot of that version or newer.
    Returns (lags, how many were never reflected)."""
    lags, never = [], 0
    for p in game.players:
        for qid, reply in p.accepted.items():
            v = int(reply.get("version") or 0)
            if v <= 0:
                continue
            later = [s.t for s in p.snapshots if s.version >= v]
            if not later:
                never += 1
                continue
            # The event may beat the HTTP reply: that is no lag at all.
            lags.append(max(0.0, min(later) - p.accepted_at[qid]))
    return lags, never


async def compare(game: Game, database_url: str, redis_url: str) -> Verdict:
    """The three-way comparison; fills the numbers and the list of problems."""
    v = Verdict()
    expected = game.expected_scores()
    for p in game.players:
        v.sent += p.stats.posts
        v.distinct += p.stats.answers_tried
        v.accepted += len(p.accepted)
        v.accepted_points += p.accepted_points
        v.events += sum(p.stats.events.values())
        v.leaderboard_events += p.stats.events["leaderboard"]
        v.reconnects += max(0, p.stats.connects - 1)
        v.retried += sum(p.stats.retries.values())
        v.server_errors += p.stats.server_errors
        v.refused += len(p.refused)
        v.undecided += len(p.undecided)
    v.problems += _client_problems(game)
    lags, v.unreflected = answer_lags(game)
    if lags:
        lags.sort()
        v.max_lag_s, v.p50_lag_s = lags[-1], lags[len(lags) // 2]
    if v.unreflected:
        v.problems.append(
            f"{v.unreflected} accepted answers were never reflected by a snapshot of their"
            " version or newer (did versions go backwards?)"
        )

    stored = await read_postgres(database_url, game.session_id)
    v.stored = stored.rows
    seen = {(p.user_id, q): int(a["points"]) for p in game.players for q, a in p.accepted.items()}
    undecided = {(p.user_id, q) for p in game.players for q in p.undecided}
    for key, points in seen.items():
        if key not in stored.answers:
            v.problems.append(f"accepted but not stored: {key}")
        elif stored.answers[key] != points:
            v.problems.append(f"stored points {stored.answers[key]} != accepted {points}: {key}")
    for key in stored.answers.keys() - seen.keys():
        # A request the client gave up on may have been committed: not lost, but
        # the client never learned it; report it, it breaks "exactly what was seen".
        why = "after the client gave up" if key in undecided else "never seen accepted"
        v.problems.append(f"stored {why}: {key}")
    for user, score in stored.scores.items():
        if user in expected and score != expected[user]:
            v.problems.append(
                f"session_player.score of {user} is {score}, expected {expected[user]}"
            )

    redis_board = await read_redis_board(redis_url, game.session_id)
    if redis_board is None:
        v.problems.append("redis: the board is missing")
    else:
        v.problems += board_problems("redis", *redis_board, expected)
        v.board_points = sum(redis_board[0].values())
        v.counted = sum(
            len(p.accepted)
            for p in game.players
            if redis_board[0].get(p.user_id) == expected[p.user_id]
        )
    http_board = await read_http_board(game)
    if isinstance(http_board, str):
        v.problems.append(f"leaderboard API: {http_board}")
    else:
        v.problems += board_problems("leaderboard API", *http_board, expected)
    top10 = await read_top10(game.session_id)
    if isinstance(top10, str) or board_problems("", *top10, expected):
        # The room event and the TOP_10 record leave together; give the record a moment.
        await asyncio.sleep(1)
        top10 = await read_top10(game.session_id)
    if isinstance(top10, str):
        v.problems.append(f"TOP_10: {top10}")
    else:
        v.problems += board_problems("TOP_10 (Kafka)", *top10, expected)
    for p in game.players:
        if p.best is None:
            v.problems.append(f"{p.nickname}: never received a leaderboard snapshot")
        else:
            v.problems += board_problems(
                f"{p.nickname}'s last snapshot", p.best.scores, p.best.players, expected
            )
    return v
