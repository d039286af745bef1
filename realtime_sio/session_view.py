"""What a socket needs to render a session at once: state, mode and the open question.

Redis's session hash answers when it says there can be no open question (lobby,
ended, self-paced); otherwise, or when Redis does not have the session, PostgreSQL
answers (the question text lives there). The answer key is never read.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from contracts import QuestionOpened, State
from services.common import db
from services.common.ranking import now_ms
from services.common.redis import session_key
from services.leaderboard.rebuild import parse_session_id


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


async def session_view(redis: Redis, session_id: str) -> SessionView | None:
    """The session's state, mode and (live, running) open question; None if unknown."""
    cached = await redis.hmget(session_key(session_id), ["state", "mode"])
    state, mode = (_s(v) if v is not None else None for v in cached)
    if state in ("lobby", "running", "ended") and mode and (mode != "live" or state != "running"):
        return SessionView(state=state, mode=mode)  # type: ignore[arg-type]
    sid = parse_session_id(session_id)
    if sid is None:
        return None
    async with db.connection() as conn:
        row = await conn.fetchrow(_QUESTION_SQL, sid)
    if row is None:
        return None
    view = SessionView(state=row["state"], mode=row["mode"])
    now = now_ms()
    if (
        row["mode"] == "live"
        and row["state"] == "running"
        and row["question"] is not None
        and row["deadline_ms"] is not None
        and row["deadline_ms"] > now
    ):
        q = (
            msgspec.json.decode(row["question"])
            if isinstance(row["question"], str | bytes)
            else row["question"]
        )
        view.question = QuestionOpened(
            session_id=session_id,
            question_id=str(q["id"]),
            index=row["current_index"],
            count=row["count"],
            text=q["text"],
            choices=list(q["choices"]),
            time_limit_s=int(q.get("time_limit_s", 20)),
            deadline_ms=row["deadline_ms"],
            server_time_ms=now,
        )
    return view


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
