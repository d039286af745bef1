"""HTTP endpoints of the quiz service: parse, call the service modules.

The connection and the Redis client come per request (``conn``, ``redis``: see
``services.common.web``); the service modules raise ``services.quiz.errors``,
which the app factory's one handler answers.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from contracts import (
    AdvanceResult,
    AnswerIn,
    AnswerResult,
    ErrorBody,
    JoinIn,
    JoinResult,
    QuestionOut,
    QuizCreated,
    QuizDetail,
    QuizIn,
    QuizList,
    SessionCreated,
    SessionIn,
    SessionResults,
)
from services.common.auth import Caller, host_only, provide_caller, signed_in
from services.common.clock import now_ms
from services.common.web import DbConnection, RedisClient
from services.quiz import answers, content, guessing, handout, results, sessions
from services.quiz.background import relay
from services.quiz.errors import NotFound

# Each committed batch of answers hands its outbox rows to this process's relay.
answers.batcher.on_commit = relay.notify_batch


def _errors(codes: dict[int, str]) -> dict[int, ResponseSpec]:
    """OpenAPI entries for error answers (all share ErrorBody); nginx adds 413 and 429."""
    common = {
        401: "Missing, invalid or expired access token",
        422: "A field is invalid, missing or unknown; the detail names it",
        503: "PostgreSQL unavailable; retry after Retry-After seconds",
    }
    return {
        code: ResponseSpec(ErrorBody, description=text, generate_examples=False)
        for code, text in {**common, **codes}.items()
    }


_NOT_HOST = "Not the quiz's (or session's) host"
_NO_SESSION = "No such session"


class QuizController(Controller):
    """Quizzes, sessions, questions, answers and results under ``/api/quiz``."""

    path = ""
    tags = ["quiz"]
    guards = [signed_in]  # before any dependency: a refused call takes no connection
    dependencies = {"caller": provide_caller}

    # ------------------------------------------------------------------ content

    @post(
        "/quizzes",
        status_code=HTTP_201_CREATED,
        guards=[host_only],
        responses=_errors({403: "Only hosts author quizzes"}),
        summary="Create a quiz (hosts); a public quiz gets a standing self-paced session",
    )
    async def create_quiz(self, data: QuizIn, caller: Caller, conn: DbConnection) -> QuizCreated:
        return await content.create_quiz(conn, caller.user_id, data)

    @get(
        "/quizzes",
        responses=_errors({}),
        summary="Public quizzes with their open self-paced session (no answers)",
    )
    async def list_quizzes(
        self,
        caller: Caller,
        conn: DbConnection,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> QuizList:
        return await content.list_public(conn, limit)

    @get(
        "/quizzes/{quiz_id:str}",
        responses=_errors({403: _NOT_HOST, 404: "No such quiz"}),
        summary="A quiz with its answer key (its host only)",
    )
    async def quiz_detail(self, quiz_id: str, caller: Caller, conn: DbConnection) -> QuizDetail:
        return await content.quiz_detail(conn, caller.user_id, quiz_id)

    # ------------------------------------------------------------------ sessions

    @post(
        "/sessions",
        status_code=HTTP_201_CREATED,
        responses=_errors({403: _NOT_HOST, 404: "No such quiz"}),
        summary="Open a session of one's quiz: live (lobby) or self-paced (running)",
    )
    async def create_session(
        self, data: SessionIn, caller: Caller, conn: DbConnection, redis: RedisClient
    ) -> SessionCreated:
        return await sessions.create_session(conn, redis, caller, data)

    @post(
        "/sessions/join",
        status_code=HTTP_200_OK,
        responses=_errors(
            {
                403: "The session's host cannot join as a player",
                404: "No such session or join code",
                429: "Too many wrong join codes from this address; see Retry-After",
                409: "The session has ended",
            }
        ),
        summary="Join a session by code or id (joining twice is harmless)",
    )
    async def join(
        self,
        request: Request,
        data: JoinIn,
        caller: Caller,
        conn: DbConnection,
        redis: RedisClient,
    ) -> JoinResult:
        by_code = data.session_id is None and data.code is not None
        address = guessing.client_address(request)
        if by_code:
            await guessing.refuse_if_guessing(redis, address)
        try:
            return await sessions.join(conn, redis, caller, data)
        except NotFound:
            if by_code:
                await guessing.count_miss(redis, address)
            raise

    @post(
        "/sessions/{session_id:str}/advance",
        status_code=HTTP_200_OK,
        responses=_errors(
            {403: _NOT_HOST, 404: _NO_SESSION, 409: "Not a live session, or it has ended"}
        ),
        summary="Live, the host: open the next question, or end after the last",
    )
    async def advance(
        self, session_id: str, caller: Caller, conn: DbConnection, redis: RedisClient
    ) -> AdvanceResult:
        return await sessions.advance(conn, redis, caller, session_id)

    @get(
        "/sessions/{session_id:str}/question",
        responses=_errors({403: "Not joined", 404: _NO_SESSION, 409: "No question to answer now"}),
        summary="The question to answer now (live: the open one; self-paced: the next)",
    )
    async def question(self, session_id: str, caller: Caller, conn: DbConnection) -> QuestionOut:
        return await handout.current_question(conn, caller, session_id)

    @post(
        "/sessions/{session_id:str}/answers",
        status_code=HTTP_200_OK,
        responses={
            200: ResponseSpec(
                AnswerResult, description="Scored (or the first reply again for a repeat)"
            ),
            **_errors(
                {
                    403: "Not joined",
                    404: _NO_SESSION,
                    409: "Not running, not the open question, not handed out to you,"
                    " or past the deadline",
                }
            ),
        },
        summary="Answer a question: scored once; a repeat returns the first reply",
    )
    async def answer(self, session_id: str, data: AnswerIn, caller: Caller) -> Response:
        now = now_ms()  # the answer's arrival on the server clock
        body = await answers.submit_once(caller, session_id, data, now)
        return Response(body, media_type=MediaType.JSON, status_code=HTTP_200_OK)

    @get(
        "/sessions/{session_id:str}/results",
        responses={
            200: ResponseSpec(SessionResults, description="JSON, or CSV with ?format=csv"),
            **_errors({403: "Not the session's host", 404: _NO_SESSION}),
        },
        summary="Final standings with every answer (the host), JSON or CSV",
    )
    async def session_results(
        self,
        session_id: str,
        caller: Caller,
        conn: DbConnection,
        fmt: Annotated[str, Parameter(query="format", pattern="^(json|csv)$")] = "json",
    ) -> Response:
        res, quiz = await results.session_results(conn, caller, session_id)
        if fmt == "csv":
            return Response(
                results.results_csv(res, quiz),
                media_type="text/csv",  # Litestar appends "; charset=utf-8"
                headers={
                    "Content-Disposition": f'attachment; filename="results-{res.session_id}.csv"'
                },
            )
        return Response(res, media_type=MediaType.JSON)
