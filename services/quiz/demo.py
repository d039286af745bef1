"""Load the demo quiz through the public API; prints one JSON line.

    python -m services.quiz.demo     (``./dev up`` runs it)

Idempotent: the demo host, its password, the quiz and the open live session are
remembered in ``<run_dir>/demo.json`` and reused while they are still good; the
live session is replaced once it has left the lobby. Output (last stdout line):
``{"title", "code", "session_id", "quiz_id", "host_username", "host_password"}``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from pathlib import Path

import httpx

from services.common.settings import get_settings

HOST_USERNAME = "demo-host"
TITLE = "Space and Science (demo)"
QUESTIONS = [
    {
        "text": "Which planet is known as the Red Planet?",
        "choices": ["Venus", "Mars", "Jupiter", "Mercury"],
        "answer": 1,
    },
    {
        "text": "What is the chemical symbol for gold?",
        "choices": ["Ag", "Go", "Au", "Gd"],
        "answer": 2,
    },
    {
        "text": "How many minutes does sunlight take to reach Earth, roughly?",
        "choices": ["8", "1", "30", "60"],
        "answer": 0,
    },
    {
        "text": "Which gas makes up most of Earth's atmosphere?",
        "choices": ["Oxygen", "Carbon dioxide", "Argon", "Nitrogen"],
        "answer": 3,
    },
    {
        "text": "What is the largest moon of Saturn?",
        "choices": ["Europa", "Titan", "Ganymede", "Io"],
        "answer": 1,
    },
]


def _state_file() -> Path:
    return Path(get_settings().run_dir) / "demo.json"


def _load_state() -> dict:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}


def _save_state(state: dict) -> None:
    f = _state_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(state))
    f.chmod(0o600)


def _login(http: httpx.Client, state: dict) -> dict:
    """Headers of the demo host, registering it the first time."""
    if not state.get("host_password"):
        password = secrets.token_urlsafe(9)
        r = http.post(
            "/api/iam/users",
            json={"username": HOST_USERNAME, "password": password, "nickname": "Demo host"},
        )
        if r.status_code == 409:
            raise SystemExit(
                f"{HOST_USERNAME} exists but its password is not in "
                f"{_state_file()}: remove the user or restore the file"
            )
        r.raise_for_status()
        state["host_password"] = password
        _save_state(state)
    r = http.post(
        "/api/iam/token", json={"username": HOST_USERNAME, "password": state["host_password"]}
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _ensure_quiz(http: httpx.Client, auth: dict, state: dict) -> str:
    if state.get("quiz_id"):
        if http.get(f"/api/quiz/quizzes/{state['quiz_id']}", headers=auth).status_code == 200:
            return state["quiz_id"]
    questions = [{**q, "time_limit_s": 20, "points": 1000} for q in QUESTIONS]
    r = http.post(
        "/api/quiz/quizzes",
        headers=auth,
        json={"title": TITLE, "public": True, "questions": questions},
    )
    r.raise_for_status()
    state["quiz_id"] = r.json()["id"]
    state.pop("session_id", None)
    _save_state(state)
    return state["quiz_id"]


def _ensure_lobby(http: httpx.Client, auth: dict, state: dict, quiz_id: str) -> None:
    if state.get("session_id"):
        r = http.get(f"/api/quiz/sessions/{state['session_id']}/results", headers=auth)
        if r.status_code == 200 and r.json()["state"] == "lobby":
            return
    r = http.post("/api/quiz/sessions", headers=auth, json={"quiz_id": quiz_id, "mode": "live"})
    r.raise_for_status()
    state["session_id"], state["code"] = r.json()["id"], r.json()["code"]
    _save_state(state)


def main() -> None:
    base = os.environ.get("QUIZ_BASE_URL", "http://127.0.0.1:8080")
    state = _load_state()
    with httpx.Client(base_url=base, timeout=10) as http:
        for attempt in range(30):  # the services may still be warming up behind nginx
            try:
                auth = _login(http, state)
                break
            except (httpx.TransportError, httpx.HTTPStatusError) as e:
                if attempt == 29:
                    raise SystemExit(f"demo: cannot reach the API at {base}: {e}") from e
                time.sleep(1)
        quiz_id = _ensure_quiz(http, auth, state)
        _ensure_lobby(http, auth, state, quiz_id)
    print(
        json.dumps(
            {
                "title": TITLE,
                "code": state["code"],
                "session_id": state["session_id"],
                "quiz_id": quiz_id,
                "host_username": HOST_USERNAME,
                "host_password": state["host_password"],
            }
        )
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
