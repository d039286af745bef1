"""The HTTP floor: Litestar + msgspec on the answer route, no product logic.

Served by granian with the stack's own settings (``infra.stack.granian``) behind
an nginx rendered from the stack's template, so only the quiz service's work is
missing from the path an answer takes.
"""

from __future__ import annotations

from litestar import Litestar, post

from contracts import AnswerIn, AnswerResult


@post("/api/quiz/sessions/{session_id:str}/answers", status_code=200, sync_to_thread=False)
async def answer(session_id: str, data: AnswerIn) -> AnswerResult:
    """Decode the body into the real Struct and reply with a fixed result."""
    return AnswerResult(question_id=data.question_id, correct=True, points=1000, score=1000, rank=1)


app = Litestar(route_handlers=[answer], openapi_config=None, debug=False)
