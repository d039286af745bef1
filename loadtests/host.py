"""The host driver: signs a host in, creates quizzes and sessions, advances them."""

from __future__ import annotations

import uuid
from typing import Any

from loadtests.client import HttpConn, HttpError
from loadtests.scenarios import quiz_body


class Host:
    def __init__(self, host: str, port: int):
        self.http = HttpConn(host, port)
        self.token = ""

    async def sign_in(self) -> None:
        """A fresh host account (register, then log in)."""
        username = f"bench{uuid.uuid4().hex[:10]}"
        password = "bench password 1"
        await self.http.call("POST", "/api/iam/users", {"username": username, "password": password})
        tokens = await self.http.call(
            "POST", "/api/iam/token", {"username": username, "password": password}
        )
        self.token = tokens["access_token"]

    async def create_quiz(
        self, title: str, questions: int, time_limit_s: int, public: bool = False
    ) -> dict:
        return await self.http.call(
            "POST",
            "/api/quiz/quizzes",
            quiz_body(title, questions, time_limit_s, public),
            self.token,
        )

    async def open_session(self, quiz_id: str, mode: str = "live") -> dict:
        return await self.http.call(
            "POST", "/api/quiz/sessions", {"quiz_id": quiz_id, "mode": mode}, self.token
        )

    async def public_sessions(self) -> dict[str, str | None]:
        """quiz id -> open self-paced session id, from the public quiz list."""
        items = (await self.http.call("GET", "/api/quiz/quizzes", token=self.token))["items"]
        return {q["id"]: q.get("open_session_id") for q in items}

    async def advance(self, session_id: str) -> dict:
        return await self.http.call(
            "POST", f"/api/quiz/sessions/{session_id}/advance", token=self.token
        )

    async def top(self, session_id: str) -> dict[str, Any] | None:
        """The session's current snapshot over HTTP, None when the call fails."""
        try:
            return await self.http.call(
                "GET", f"/api/leaderboard/sessions/{session_id}/top", token=self.token, retries=3
            )
        except (HttpError, OSError):
            return None

    def close(self) -> None:
        self.http.close()
