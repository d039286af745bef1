"""What a socket needs to render a session at once: state, mode and the open question.

Redis's session hash (written by the quiz service, with the open live question as
the `question` event's JSON) answers; PostgreSQL answers when Redis does not have
the session. The answer key is never read.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contracts import LeaderboardSnapshot, QuestionOpened, State
from services.board.access import SessionRole, role_from_redis
from services.board.question import StoredQuestion, question_opened
from services.board.ranking import SNAPSHOT_LUA_FUNCTION, parse_snapshot, snapshot_keys
from services.board.rebuild import parse_session_id
from services.common import db
from services.common.clock import now_ms
from services.common.redis import as_text, session_key


class SessionView(msgspec.Struct, kw_only=True):
    state: State
    mode: str
    question: QuestionOpened | None = None


_QUESTION_SQL = """
select s.mode, s.state, s.current_index, s.deadline_ms,
       jsonb_array_length(q.questions) as count,
       case when s.current_index >= 0
            then (q.questions -> s.current_index) - 'answer' end as question
from quiz_session s join quiz q on q.id = s.quiz_id
where s.id = $1
"""


_VIEW_FIELDS = ["state", "mode", "question", "deadline_ms"]


async def session_view(redis: Redis, session_id: str) -> SessionView | None:
    """The session's state, mode and (live, running) open question; None if unknown."""
    cached = await redis.hmget(session_key(session_id), _VIEW_FIELDS)
    now = now_ms()
    return _view_from_cache(cached, now) or await _session_view_from_postgres(session_id, now)


def _view_from_cache(cached: list, now: int) -> SessionView | None:
    """The view from the session hash's fields; None when Redis does not have it whole."""
    state, mode, question, deadline = (as_text(v) if v is not None else None for v in cached)
    if not (state in ("lobby", "running", "ended") and mode and question is not None):
        return None
    view = SessionView(state=state, mode=mode)  # type: ignore[arg-type]
    # The quiz service keeps the open live question (never its answer) in the hash.
    if mode == "live" and state == "running" and question and int(deadline or 0) > now:
        view.question = msgspec.json.decode(question, type=QuestionOpened)
        view.question.server_time_ms = now
    return view


class JoinRead(msgspec.Struct):
    """What a ``join`` needs, as Redis has it; None parts are asked for the slow way."""

    role: SessionRole | None
    snapshot: LeaderboardSnapshot | None
    view: SessionView | None


# The caller's role, the board's snapshot and the session view in one script call:
# one round trip for a join (all keys share the session's hash tag: one slot).
_JOIN_LUA = (
    SNAPSHOT_LUA_FUNCTION
    + """
local host = redis.call('HGET', KEYS[4], 'host_id')
local member = redis.call('HEXISTS', KEYS[3], ARGV[2])
local view = redis.call('HMGET', KEYS[4], 'state', 'mode', 'question', 'deadline_ms')
return {host, member, view, snapshot(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]))}
"""
)


_CONNECTION_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class JoinReads:
    """Role, snapshot and view of each join in one Redis round trip, shared by the
    joins that arrive together: the reads asked for in one pass of the event loop go
    out as one pipeline (at most ``BATCH`` each). A join storm then costs a few
    round trips and connections instead of one of each per socket, and no join waits
    for a free pooled connection behind hundreds of others.
    """

    BATCH = 256
    RETRY_DELAY_S = 0.1

    def __init__(self, limit: int = 10):
        self.limit = limit
        self.redis: Redis | None = None
        self._queued: list[tuple[str, str, asyncio.Future[list]]] = []
        self._tasks: set[asyncio.Task] = set()

    async def read(self, redis: Redis, session_id: str, user_id: str) -> JoinRead:
        self.redis = redis
        fut: asyncio.Future[list] = asyncio.get_running_loop().create_future()
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append((session_id, user_id, fut))
        host, member, cached, snap = await fut
        return JoinRead(
            role=role_from_redis(host, member, user_id),
            snapshot=parse_snapshot(session_id, snap),
            view=_view_from_cache(cached, now_ms()),
        )

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for i in range(0, len(queued), self.BATCH):
            task = asyncio.create_task(self._run(queued[i : i + self.BATCH]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[str, str, asyncio.Future[list]]]) -> None:
        """Run the batch's reads as one pipeline; those lost to a dropped connection
        (a stale pooled connection after a Redis restart or a cluster failover) are
        read again one by one after a pause: a single command gets the client's own
        retries and, on a cluster, its fresh slot map, which a pipeline does not."""
        assert self.redis is not None
        pipe = self.redis.pipeline(transaction=False)
        for session_id, user_id, _ in batch:
            pipe.eval(_JOIN_LUA, 4, *self._args(session_id, user_id))  # EVAL: no SCRIPT EXISTS
        try:
            results: list[Any] = list(await pipe.execute(raise_on_error=False))
        except Exception as e:
            results = [e] * len(batch)
        lost = [i for i, res in enumerate(results) if isinstance(res, _CONNECTION_LOST)]
        if lost:
            await asyncio.sleep(self.RETRY_DELAY_S)
            again = await asyncio.gather(
                *(self.redis.eval(_JOIN_LUA, 4, *self._args(*batch[i][:2])) for i in lost),
                return_exceptions=True,
            )
            for i, res in zip(lost, again, strict=True):
                results[i] = res
        for (_, _, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    def _args(self, session_id: str, user_id: str) -> list[Any]:
        return [*snapshot_keys(session_id), session_key(session_id), self.limit, user_id]


async def _session_view_from_postgres(session_id: str, now: int) -> SessionView | None:
    sid = parse_session_id(session_id)
    if sid is None:
        return None
    async with db.connection() as conn:
        row = await conn.fetchrow(_QUESTION_SQL, sid)
    if row is None:
        return None
    view = SessionView(state=row["state"], mode=row["mode"])
    if (
        row["mode"] == "live"
        and row["state"] == "running"
        and row["question"] is not None
        and row["deadline_ms"] is not None
        and row["deadline_ms"] > now
    ):
        raw = row["question"]
        q = (
            msgspec.json.decode(raw, type=StoredQuestion)
            if isinstance(raw, str | bytes)
            else msgspec.convert(raw, StoredQuestion)
        )
        view.question = question_opened(
            session_id, q, row["current_index"], row["count"], row["deadline_ms"], now
        )
    return view
