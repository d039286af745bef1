"""The hot path: answers scored in batches (group commit), each one durable with its
SCORE_CHANGE outbox row before its reply.

Answers that arrive together in one quiz process share their round trips
(``AnswerBatcher``): whatever is pending when a batch returns is the next batch, so
a lone answer waits for nothing and a burst pays per batch, not per answer:

1. one SELECT reads, for every answer of the batch, the session, the player, the
   handout and an earlier answer (no lock); answers that this process can score
   from what it remembers of the player and the session (``answer_cache``) skip it,
   so a batch of players who answered here before costs one round trip, not two;
2. Python checks and scores each answer (``score_answer``, the one definition);
3. one Redis pipeline writes the new totals (one script per session: each player's
   total, version and rank, exactly as one answer after another would get them);
4. one statement (its own transaction: committed when it returns) writes every
   answer row, new total and outbox row, each only where the player's row is still
   as step 1 read it: ``last_index``, which every accepted answer moves, is checked
   under the row lock (for a remembered answer, also the session's state, open
   question and deadline), and only where no board rebuild replaced the answer's
   board write since step 3 (``board_rebuilt``).

The board is written before the commit so that the stored reply carries the rank and
the board version; a total the board got but PostgreSQL did not commit marks the
session's board dirty (rebuilt from PostgreSQL by the leaderboard consumer).

One player has at most one answer in a batch (later ones wait for the next). An
answer whose player changed between steps 1 and 4 (its repeat, or another answer of
the player, committed meanwhile by the other quiz process) is not written: it goes
into the next batch, which sees the committed answer and returns its reply byte for
byte, or scores it from the new state. Step 4 is one statement, so a failure writes
nothing of the batch; its answers get the error (503 when PostgreSQL is unreachable:
the client retries, and a retry of an answer that was committed after all gets the
stored reply).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis

from contracts import AnswerIn, AnswerResult, ScoreChange
from services.board import ranking
from services.board.ranking import ScoreWrite
from services.common import db
from services.common.auth import Caller
from services.common.clock import now_ms
from services.common.metrics import observe_ms
from services.common.redis import get_redis
from services.common.settings import get_settings
from services.quiz import held
from services.quiz.answer_cache import REMEMBERED, answer_cache
from services.quiz.content import Question, QuizContent, load_quiz, parse_id
from services.quiz.errors import Conflict, Forbidden, NotFound, QuizError, Unavailable
from services.quiz.scoring import score_answer
from services.quiz.sessions import GRACE_MS

log = logging.getLogger("quizrt.quiz.answers")

# Answers per batch at most, and batches in flight per process at once.
MAX_BATCH = 256
LANES = 2
# Times an answer is put back because its player changed meanwhile (then 503).
MAX_ATTEMPTS = 5

_reply = msgspec.json.Decoder(AnswerResult)

_READ = db.hot(
    """
SELECT s.id IS NOT NULL AS found, sp.user_id IS NOT NULL AS joined,
       sp.score, sp.streak, sp.last_index, sp.nickname, sp.reached_ms,
       s.state, s.mode, s.current_index, s.question_opened_ms, s.deadline_ms, s.quiz_id,
       s.created_ms, s.hold_results, h.handed_ms, a.reply::text AS reply
FROM unnest($1::uuid[], $2::uuid[], $3::text[]) WITH ORDINALITY AS i(sid, uid, qid, n)
LEFT JOIN quiz_session s ON s.id = i.sid
LEFT JOIN session_player sp ON sp.session_id = i.sid AND sp.user_id = i.uid
LEFT JOIN handout h ON h.session_id = i.sid AND h.user_id = i.uid AND h.question_id = i.qid
LEFT JOIN answer a ON a.session_id = i.sid AND a.user_id = i.uid AND a.question_id = i.qid
ORDER BY i.n
"""
)

# One array per column, one element per answer; $17 sessions whose board missed a
# write (or got one that was not committed), $18 the SCORE_CHANGE topic; $19-$22:
# whether the answer was scored from memory, and the session as remembered; $23 the
# board version the answer's write produced (0: none).
#
# A board rebuild (services/board/rebuild.py) reads PostgreSQL, replaces the board and
# records its version in ``board_rebuilt``, holding the session row FOR UPDATE. An
# answer whose board write that rebuild replaced (its version is not above
# ``board_rebuilt``) is not written: it is scored again in the next batch, whose board
# write lands on the rebuilt board. The session rows are locked FOR KEY SHARE (which
# only FOR UPDATE waits for), so the check sees a rebuild that committed while this
# statement waited, and a rebuild waits for this statement's commit.
_WRITE = db.hot(
    """
WITH i AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::int[],
                       $7::bool[], $8::int[], $9::int[], $10::int[], $11::bigint[],
                       $12::text[], $13::int[], $14::bigint[], $15::int[], $16::bytea[],
                       $19::bool[], $20::text[], $21::int[], $22::bigint[], $23::bigint[])
    WITH ORDINALITY AS t(id, sid, uid, qid, idx, choice, correct, points, elapsed, total,
                         answered, reply, streak, reached, seen_last, payload, remembered,
                         seen_state, seen_current, seen_deadline, version, n)
), session AS (
  SELECT s.id, s.state, s.current_index, s.deadline_ms, s.board_rebuilt FROM quiz_session s
   WHERE s.id IN (SELECT sid FROM i) FOR KEY SHARE
), player AS (
  UPDATE session_player sp
     SET score = i.total, streak = i.streak, last_index = i.idx, reached_ms = i.reached,
         correct_count = sp.correct_count + i.correct::int
    FROM i JOIN session s ON s.id = i.sid
   WHERE sp.session_id = i.sid AND sp.user_id = i.uid AND sp.last_index = i.seen_last
     AND (NOT i.remembered OR (s.state = i.seen_state AND s.current_index = i.seen_current
                               AND s.deadline_ms IS NOT DISTINCT FROM i.seen_deadline))
     AND (i.version = 0 OR i.version > s.board_rebuilt)
  RETURNING i.id
), stale AS (
  SELECT i.id FROM i JOIN session s ON s.id = i.sid
   WHERE i.version <> 0 AND i.version <= s.board_rebuilt
), answer_row AS (
  INSERT INTO answer (id, session_id, user_id, question_id, question_index, choice, correct,
                      points, elapsed_ms, score_after, answered_ms, reply)
  SELECT i.id, i.sid, i.uid, i.qid, i.idx, i.choice, i.correct, i.points, i.elapsed,
         i.total, i.answered, i.reply::jsonb
    FROM i JOIN player USING (id)
), dirty AS (
  UPDATE quiz_session SET board_dirty = true WHERE id = ANY($17::uuid[]) AND NOT board_dirty
), event AS (
  INSERT INTO outbox (topic, key, payload)
  SELECT $18, i.sid::text, i.payload FROM i JOIN player USING (id) ORDER BY i.n
  RETURNING id
)
SELECT ARRAY(SELECT id FROM player) AS written, ARRAY(SELECT id FROM event) AS outbox_ids,
       ARRAY(SELECT id FROM stale) AS stale
"""
)

# Ranks when Redis is down: from PostgreSQL's totals as this batch found them.
_RANKS_IN_POSTGRES = """
SELECT (SELECT count(*) FROM session_player sp
         WHERE sp.session_id = i.sid
           AND (sp.score > i.total OR (sp.score = i.total AND sp.reached_ms < i.reached)))
       + 1 AS rank
FROM unnest($1::uuid[], $2::int[], $3::bigint[]) WITH ORDINALITY AS i(sid, total, reached, n)
ORDER BY i.n
"""

_MARK_DIRTY = "UPDATE quiz_session SET board_dirty = true WHERE id = ANY($1) AND NOT board_dirty"


def encode_reply(result: AnswerResult) -> bytes:
    return msgspec.json.encode(result)


def stored_reply(text: str) -> bytes:
    """The first reply again. PostgreSQL's jsonb normalizes spacing and key order, so
    the stored JSON is decoded and encoded the way the first reply was: same bytes."""
    return encode_reply(_reply.decode(text))


class Answer(msgspec.Struct, frozen=True):
    """One submitted answer: who, where, what, and when it arrived (server clock, ms)."""

    caller: Caller
    session_id: uuid.UUID
    data: AnswerIn
    now: int

    @property
    def player(self) -> tuple[uuid.UUID, str]:
        return self.session_id, self.caller.user_id


class Retry(msgspec.Struct, frozen=True):
    """The answer's player changed meanwhile: score it again in the next batch."""


class _Plan(msgspec.Struct, kw_only=True):
    """An answer that passed the checks, scored, waiting for the board and the commit."""

    k: int  # position in the batch
    answer: Answer
    session: str  # canonical session id
    index: int
    question_id: str
    correct: bool
    points: int
    streak: int
    elapsed: int
    total: int
    reached: int
    nickname: str
    seen_last: int
    holding: bool = False  # held results: the question is open, the reply is held
    remembered: bool = False  # scored from answer_cache: the write checks the session
    seen_state: str = ""
    seen_current: int = -1
    seen_deadline: int | None = None
    rank: int = 0
    version: int = 0
    answer_id: uuid.UUID = msgspec.field(default_factory=uuid.uuid4)


Outcome = bytes | QuizError | Retry | BaseException

# Sessions whose board got a total PostgreSQL did not commit, not yet marked dirty
# (PostgreSQL was down): marked by the next batch that reaches it.
_dirty: set[uuid.UUID] = set()


async def score_batch(conn: Any, redis: Redis, answers: list[Answer]) -> list[Outcome]:
    """Score ``answers`` (at most one per player) together; one outcome per answer, in
    order: the reply's bytes, the QuizError to answer with, ``Retry``, or the error
    that failed the batch's write. Raises when the batch's read fails."""
    outcomes: list[Outcome] = [Retry()] * len(answers)
    plans: list[_Plan] = []
    quizzes: dict[Any, QuizContent] = {}  # by the row's quiz id (no str() per answer)
    to_read: list[int] = []
    for k, a in enumerate(answers):
        row = answer_cache.row(a.session_id, a.caller.user_id, a.data.question_id)
        if row is not None:
            try:
                checked = await _check(conn, k, a, row, quizzes)
            except QuizError:
                checked = None  # a refusal is never given from memory: read it
            if isinstance(checked, _Plan):
                checked.remembered = True
                checked.seen_state, checked.seen_current = row["state"], row["current_index"]
                checked.seen_deadline = row["deadline_ms"]
                plans.append(checked)
                continue
        to_read.append(k)
    if to_read:
        rows = await conn.fetch(
            _READ,
            [answers[k].session_id for k in to_read],
            [uuid.UUID(answers[k].caller.user_id) for k in to_read],
            [answers[k].data.question_id for k in to_read],
        )
        for k, row in zip(to_read, rows, strict=True):
            a = answers[k]
            answer_cache.read(a.session_id, a.caller.user_id, a.data.question_id, row)
            try:
                checked = await _check(conn, k, a, row, quizzes)
            except QuizError as e:
                outcomes[k] = e
                continue
            if isinstance(checked, bytes):
                outcomes[k] = checked
            else:
                plans.append(checked)
    if plans:
        plans.sort(key=lambda p: p.k)  # the board ranks them in the batch's order
        await _write(conn, redis, plans, outcomes)
    if _dirty:
        await _mark_dirty(conn)
    return outcomes


async def _check(
    conn: Any, k: int, a: Answer, row: Any, quizzes: dict[Any, QuizContent]
) -> bytes | _Plan:
    """The stored reply of a repeat, or the scored answer; raises NotFound (no such
    session), Forbidden (not joined), Conflict (not running, not the open question,
    not handed out, past the deadline)."""
    if not row["found"]:
        raise NotFound("No such session")
    if not row["joined"]:
        raise Forbidden("Join the session first")
    hold = row["mode"] == "live" and bool(row["hold_results"])
    if row["reply"] is not None and not hold:
        return stored_reply(row["reply"])
    quiz = await _quiz_of(conn, row["quiz_id"], quizzes)
    index = quiz.index_of.get(a.data.question_id)
    # Held results: while the question is open, replies (repeats too) are held.
    holding = hold and index is not None and held.is_open(row, index, a.now, GRACE_MS)
    if row["reply"] is not None:
        body = stored_reply(row["reply"])
        return held.held_reply(body) if holding else body
    index, q, opened = _open_question(row, quiz, index, a.now)
    return _scored(k, a, row, q, index, opened, holding)


async def _quiz_of(conn: Any, quiz_id: Any, quizzes: dict[Any, QuizContent]) -> QuizContent:
    """The quiz's content, loaded once per batch (by the row's quiz id: no str())."""
    quiz = quizzes.get(quiz_id)
    if quiz is None:
        quiz = await load_quiz(conn, quiz_id)
        assert quiz is not None
        quizzes[quiz_id] = quiz
    return quiz


def _open_question(
    row: Any, quiz: QuizContent, index: int | None, now: int
) -> tuple[int, Question, int]:
    """The index, the question and when it opened for this player, if it is open for
    them at ``now``; raises Conflict otherwise."""
    if row["state"] != "running":
        raise Conflict("The session is not running")
    if index is None:
        raise Conflict("That question is not open for you")
    if index <= row["last_index"]:
        raise Conflict("That question is closed")  # skipped: answered ones have a reply
    q = quiz.questions[index]
    if row["mode"] == "live":
        if index != row["current_index"]:
            raise Conflict("That question is not open")
        opened, deadline = row["question_opened_ms"], row["deadline_ms"]
    else:
        if row["handed_ms"] is None:
            raise Conflict("That question was not given to you")
        opened = row["handed_ms"]
        deadline = opened + q.time_limit_s * 1000
    if now > deadline + GRACE_MS:
        raise Conflict("Past the deadline")
    return index, q, opened


def _scored(
    k: int, a: Answer, row: Any, q: Question, index: int, opened: int, holding: bool
) -> _Plan:
    """The answer scored (``score_answer``, the one definition) against the player's
    row as the batch read it."""
    elapsed = max(a.now - opened, 0)
    correct = a.data.choice == q.answer
    streak_before = row["streak"] if index == row["last_index"] + 1 else 0
    points, streak = score_answer(correct, elapsed, q.time_limit_s, q.points, streak_before)
    return _Plan(
        k=k,
        answer=a,
        session=str(a.session_id),  # canonical form: Redis keys and the Kafka key use it
        index=index,
        question_id=q.id,
        correct=correct,
        points=points,
        streak=streak,
        elapsed=elapsed,
        total=row["score"] + points,
        reached=a.now - row["created_ms"] if points > 0 else row["reached_ms"],
        nickname=row["nickname"],
        seen_last=row["last_index"],
        holding=holding,
    )


async def _place_on_board(conn: Any, redis: Redis, plans: list[_Plan]) -> set[uuid.UUID]:
    """Write the batch's totals to the board first, so the replies carry rank and
    version; returns the sessions whose board missed the write (Redis down)."""
    held_plans = [p for p in plans if p.holding]
    if held_plans:
        # Held results: the board stands still until the question closes; the stored
        # reply (returned once it closed) takes its rank from PostgreSQL.
        await _rank_in_postgres(conn, held_plans)
        plans = [p for p in plans if not p.holding]
        if not plans:
            return set()
    writes: dict[str, list[ScoreWrite]] = {}
    for p in plans:
        writes.setdefault(p.session, []).append(
            ScoreWrite(p.answer.caller.user_id, p.total, p.reached, p.nickname, p.points > 0)
        )
    try:
        placed = await ranking.write_scores(redis, writes)
    except Exception as e:
        log.warning("board write failed for %d session(s) (will rebuild): %s", len(writes), e)
        missed = {p.answer.session_id for p in plans}
        _dirty.update(missed)  # some of the writes may have been made
        await _rank_in_postgres(conn, plans)
        return missed
    seen: dict[str, int] = {}
    for p in plans:
        i = seen[p.session] = seen.get(p.session, -1) + 1
        got = placed[p.session][i]
        p.rank, p.version = got.rank, got.version
    return set()


async def _rank_in_postgres(conn: Any, plans: list[_Plan]) -> None:
    """Ranks from PostgreSQL's totals (Redis down, or results held); no board version."""
    ranks = await conn.fetch(
        _RANKS_IN_POSTGRES,
        [p.answer.session_id for p in plans],
        [p.total for p in plans],
        [p.reached for p in plans],
    )
    for p, r in zip(plans, ranks, strict=True):
        p.rank, p.version = r["rank"], 0


def _reply_and_event(p: _Plan) -> tuple[bytes, bytes]:
    body = encode_reply(
        AnswerResult(
            question_id=p.question_id,
            correct=p.correct,
            points=p.points,
            score=p.total,
            rank=p.rank,
            streak=p.streak,
            elapsed_ms=p.elapsed,
            version=p.version,
        )
    )
    event = msgspec.json.encode(
        ScoreChange(
            answer_id=str(p.answer_id),
            session_id=p.session,
            user_id=p.answer.caller.user_id,
            nickname=p.nickname,
            question_id=p.question_id,
            correct=p.correct,
            points=p.points,
            total=p.total,
            answered_ms=p.answer.now,
            rank=p.rank if p.version else 0,  # a board rank only (not PostgreSQL's)
        )
    )
    return body, event


async def _write(conn: Any, redis: Redis, plans: list[_Plan], outcomes: list[Outcome]) -> None:
    missed = await _place_on_board(conn, redis, plans)
    # Sessions whose board this batch wrote (or may have written, Redis failing midway).
    touched = missed | {p.answer.session_id for p in plans if p.version}
    built = [_reply_and_event(p) for p in plans]
    dirty = missed | _dirty
    try:
        row = await conn.fetchrow(
            _WRITE,
            [p.answer_id for p in plans],
            [p.answer.session_id for p in plans],
            [uuid.UUID(p.answer.caller.user_id) for p in plans],
            [p.question_id for p in plans],
            [p.index for p in plans],
            [p.answer.data.choice for p in plans],
            [p.correct for p in plans],
            [p.points for p in plans],
            [p.elapsed for p in plans],
            [p.total for p in plans],
            [p.answer.now for p in plans],
            [body.decode() for body, _ in built],
            [p.streak for p in plans],
            [p.reached for p in plans],
            [p.seen_last for p in plans],
            [event for _, event in built],
            list(dirty),
            get_settings().topic_score_change,
            [p.remembered for p in plans],
            [p.seen_state for p in plans],
            [p.seen_current for p in plans],
            [p.seen_deadline for p in plans],
            [p.version for p in plans],
        )
    except Exception as e:
        _dirty.update(touched)  # the board may hold totals that were not committed
        for p in plans:
            outcomes[p.k] = e
            answer_cache.forget_player(p.answer.session_id, p.answer.caller.user_id)
        return
    committed = now_ms()
    _dirty.difference_update(dirty)
    written, stale = set(row["written"]), set(row["stale"])
    for p, (body, _) in zip(plans, built, strict=True):
        if p.answer_id in written:
            outcomes[p.k] = held.held_reply(body) if p.holding else body
            observe_ms("arrive_commit", p.answer.now, committed)
            answer_cache.written(
                p.answer.session_id,
                p.answer.caller.user_id,
                p.total,
                p.streak,
                p.index,
                p.nickname,
                p.reached,
            )
            if p.remembered:
                REMEMBERED.inc()
            continue
        # Not written: the player (or, remembered, the session) changed meanwhile,
        # or a rebuild replaced the board write (stale: the board does not hold it).
        answer_cache.forget_player(p.answer.session_id, p.answer.caller.user_id)
        if p.remembered:
            answer_cache.forget_session(p.answer.session_id)
        if p.version and p.answer_id not in stale:
            _dirty.add(p.answer.session_id)  # the board got a total that lost the race
    if row["outbox_ids"]:
        batcher.committed(list(row["outbox_ids"]), committed)


async def _mark_dirty(conn: Any) -> None:
    """Mark the boards that hold uncommitted totals for a rebuild (kept for the next
    batch when PostgreSQL fails)."""
    marking = list(_dirty)
    try:
        await conn.execute(_MARK_DIRTY, marking)
    except Exception as e:
        log.error("boards of %d session(s) may show uncommitted totals: %s", len(marking), e)
    else:
        _dirty.difference_update(marking)


class _Waiting(msgspec.Struct):
    answer: Answer
    future: asyncio.Future[bytes]
    attempts: int = 0


class AnswerBatcher:
    """Group commit: the answers queued in this process go to PostgreSQL together.

    Up to ``lanes`` batches are in flight at once; a lane takes whatever is queued
    when it is free (at most ``max_batch``, one answer per player, players of other
    lanes' batches skipped), so a batch is as large as the load makes it.
    ``on_commit`` hears the outbox ids of each committed batch (the relay).
    """

    def __init__(self, lanes: int = LANES, max_batch: int = MAX_BATCH):
        self.lanes = lanes
        self.max_batch = max_batch
        self.on_commit: Callable[[list[int], int], None] | None = None
        self._queue: deque[_Waiting] = deque()
        self._busy: set[tuple[uuid.UUID, str]] = set()  # players in a batch in flight
        self._running: set[asyncio.Task] = set()
        self.batches = 0
        self.answers = 0

    async def submit(self, answer: Answer) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(answer, future))
        self._start_lane()
        return await future

    def committed(self, outbox_ids: list[int], committed_ms: int) -> None:
        if self.on_commit is not None:
            self.on_commit(outbox_ids, committed_ms)

    def _start_lane(self) -> None:
        if len(self._running) < self.lanes and self._queue:
            task = asyncio.ensure_future(self._lane())
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take(self) -> list[_Waiting]:
        taken: list[_Waiting] = []
        rest: deque[_Waiting] = deque()
        players: set[tuple[uuid.UUID, str]] = set()
        while self._queue and len(taken) < self.max_batch:
            w = self._queue.popleft()
            if w.future.done():
                continue  # its request was cancelled
            key = w.answer.player
            if key in players or key in self._busy:
                rest.append(w)
            else:
                players.add(key)
                taken.append(w)
        rest.extend(self._queue)
        self._queue = rest
        return taken

    async def _lane(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return  # nothing, or only players another lane is scoring (it takes them)
            keys = [w.answer.player for w in batch]
            self._busy.update(keys)
            try:
                outcomes = await self._run([w.answer for w in batch])
            finally:
                self._busy.difference_update(keys)
            again: list[_Waiting] = []
            for w, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Retry):
                    w.attempts += 1
                    if w.attempts < MAX_ATTEMPTS:
                        again.append(w)
                        continue
                    outcome = Unavailable("Too many concurrent changes, retry")
                if w.future.done():
                    continue
                if isinstance(outcome, bytes):
                    w.future.set_result(outcome)
                else:
                    w.future.set_exception(outcome)
            self._queue.extendleft(reversed(again))
            self._start_lane()

    async def _run(self, answers: list[Answer]) -> list[Outcome]:
        self.batches += 1
        self.answers += len(answers)
        try:
            async with db.connection() as conn:
                return await score_batch(conn, get_redis(), answers)
        except Exception as e:
            return [e] * len(answers)


batcher = AnswerBatcher()

# Submissions of one player's answer to one question now in flight in this process.
_in_flight: dict[tuple[str, str, str], asyncio.Future[bytes]] = {}


async def submit_once(caller: Caller, session_id: str, data: AnswerIn, now: int) -> bytes:
    """Score one answer (``now``: its arrival, server clock ms); returns the reply.

    Concurrent repeats of one answer are joined into one: a client that fires the
    same answer many times at once (a retry loop, a double tap, or malice) waits for
    the first copy's result; the database still guarantees one answer per player and
    question across processes.
    """
    sid = parse_id(session_id, "session")
    key = (str(sid), caller.user_id, data.question_id)
    pending = _in_flight.get(key)
    if pending is not None:
        return await asyncio.shield(pending)
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    _in_flight[key] = future
    try:
        body = await batcher.submit(Answer(caller, sid, data, now))
    except BaseException as e:
        future.set_exception(e)
        future.exception()  # mark retrieved: nobody may be waiting
        raise
    else:
        future.set_result(body)
        return body
    finally:
        del _in_flight[key]
