"""HTTP endpoints of the quiz service: parse, call the service modules, map errors."""

from __future__ import annotations

from typing import Annotated, Any

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
from services.common import db
from services.common.auth import Caller, host_only, provide_caller
from services.common.clock import now_ms
from services.common.redis import get_redis
from services.quiz import answers, content, guessing, results, sessions
from services.quiz.background import relay
from services.quiz.errors import DB_DOWN_ERRORS, NotFound, QuizError

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


def _quiz_error(_: Request, exc: QuizError) -> Response:
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.field:
        body["detail"] = f"{exc.detail} (field `{exc.field}`)"
        body["extra"] = [{"key": exc.field, "message": exc.detail}]
    headers = {"Retry-After": "1"} if exc.status_code == 503 else None
    return Response(body, status_code=exc.status_code, media_type=MediaType.JSON, headers=headers)


def _db_down(_: Request, exc: Exception) -> Response:
    return Response(
        {"status_code": 503, "detail": "Database unavailable, retry later"},
        status_code=503,
        media_type=MediaType.JSON,
        headers={"Retry-After": "1"},
    )


class QuizController(Controller):
    """Quizzes, sessions, questions, answers and results under ``/api/quiz``."""

    path = ""
    tags = ["quiz"]
    dependencies = {"caller": provide_caller}
    exception_handlers = {QuizError: _quiz_error, **{e: _db_down for e in DB_DOWN_ERRORS}}

    # ------------------------------------------------------------------ content

    @post(
        "/quizzes",
        status_code=HTTP_201_CREATED,
        guards=[host_only],
        responses=_errors({403: "Only hosts author quizzes"}),
        summary="Create a quiz (hosts); a public quiz gets a standing self-paced session",
    )
    async def create_quiz(self, data: QuizIn, caller: Caller) -> QuizCreated:
        async with db.connection() as conn:
            return await content.create_quiz(conn, caller.user_id, data)

    @get(
        "/quizzes",
        responses=_errors({}),
        summary="Public quizzes with their open self-paced session (no answers)",
    )
    async def list_quizzes(
        self,
        caller: Caller,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> QuizList:
        async with db.connection() as conn:
            return await content.list_public(conn, limit)

    @get(
        "/quizzes/{quiz_id:str}",
        responses=_errors({403: _NOT_HOST, 404: "No such quiz"}),
        summary="A quiz with its answer key (its host only)",
    )
    async def quiz_detail(self, quiz_id: str, caller: Caller) -> QuizDetail:
        async with db.connection() as conn:
            return await content.quiz_detail(conn, caller.user_id, quiz_id)

    # ------------------------------------------------------------------ sessions

    @post(
        "/sessions",
        status_code=HTTP_201_CREATED,
        responses=_errors({403: _NOT_HOST, 404: "No such quiz"}),
        summary="Open a session of one's quiz: live (lobby) or self-paced (running)",
    )
    async def create_session(self, data: SessionIn, caller: Caller) -> SessionCreated:
        async with db.connection() as conn:
            return await sessions.create_session(conn, get_redis(), caller, data)

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
    async def join(self, request: Request, data: JoinIn, caller: Caller) -> JoinResult:
        by_code = data.session_id is None and data.code is not None
        address = guessing.client_address(request)
        if by_code:
            await guessing.refuse_if_guessing(get_redis(), address)
        try:
            async with db.connection() as conn:
                return await sessions.join(conn, get_redis(), caller, data)
        except NotFound:
            if by_code:
                await guessing.count_miss(get_redis(), address)
            raise

    @post(
        "/sessions/{session_id:str}/advance",
        status_code=HTTP_200_OK,
        responses=_errors(
            {403: _NOT_HOST, 404: _NO_SESSION, 409: "Not a live session, or it has ended"}
        ),
        summary="Live, the host: open the next question, or end after the last",
    )
    async def advance(self, session_id: str, caller: Caller) -> AdvanceResult:
        async with db.connection() as conn:
            return await sessions.advance(conn, get_redis(), caller, session_id)

    @get(
        "/sessions/{session_id:str}/question",
        responses=_errors({403: "Not joined", 404: _NO_SESSION, 409: "No question to answer now"}),
        summary="The question to answer now (live: the open one; self-paced: the next)",
    )
    async def question(self, session_id: str, caller: Caller) -> QuestionOut:
        async with db.connection() as conn:
            return await sessions.current_question(conn, caller, session_id)

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
        fmt: Annotated[str, Parameter(query="format", pattern="^(json|csv)$")] = "json",
    ) -> Response:
        async with db.connection() as conn:
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
