"""No password, access token, refresh token, password hash or private key appears
in any log of the stack (stack_dir/logs: every service, nginx, the servers).

This module runs late in the suite (alphabetically), so the logs hold the whole
run's traffic; it adds its own flows that touch every secret path (wrong
password, refresh reuse, tokens in the socket.io query string, forged tokens,
invalid bodies carrying a password) and checks every secret the harness handled
during the run (tests/chaos/secrets.py) as well as secret-shaped strings.
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from pathlib import Path

import httpx
import pytest
import socketio

from tests.chaos.player import close_socket
from tests.chaos.secrets import HANDLED, remember, remember_tokens

pytestmark = pytest.mark.stack

JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")
SHAPES = {
    "a JWT": JWT,
    "a PEM private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an argon2 hash": re.compile(r"\$argon2(id|i|d)\$"),
    "a bearer header": re.compile(r"Bearer\s+[\w-]{20,}"),
}


async def _touch_every_secret_path(base_url: str) -> None:
    username = f"sec{uuid.uuid4().hex[:10]}"
    password = f"Secret-{uuid.uuid4().hex}"
    remember(password, password + "x")
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        r = await c.post("/api/iam/users", json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        r = await c.post("/api/iam/token", json={"username": username, "password": password + "x"})
        assert r.status_code == 401
        r = await c.post("/api/iam/token", json={"username": username, "password": password})
        tokens = r.json()
        remember_tokens(tokens)
        r = await c.post("/api/iam/token/refresh", json={"refresh_token": tokens["refresh_token"]})
        rotated = r.json()
        remember_tokens(rotated)
        r = await c.post("/api/iam/token/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 401
        # Invalid bodies that carry a password: the 4xx must not echo it into a log.
        await c.post("/api/iam/users", json={"username": "x", "password": password, "bad": 1})
        await c.post(
            "/api/iam/token", content=f'{{"username": "{username}", "password": "{password}"'
        )
        headers = {"Authorization": f"Bearer {rotated['access_token']}"}
        await c.get("/api/quiz/quizzes", headers=headers)
        await c.get(f"/api/leaderboard/sessions/{uuid.uuid4()}/top", headers=headers)
        await c.get("/api/leaderboard/sessions/x/top", headers={"Authorization": "Bearer eyJ.x.y"})
    # socket.io: token in auth and in the query string (clients that cannot send auth).
    for url, auth in (
        (base_url, {"token": rotated["access_token"]}),
        (f"{base_url}?token={rotated['access_token']}", None),
        (base_url, {"token": rotated["access_token"][:-4] + "AAAA"}),
    ):
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(url, auth=auth, transports=["polling"], wait_timeout=5)
            await client.call("join", {"session_id": str(uuid.uuid4())}, timeout=3)
        except Exception:
            pass
        finally:
            await close_socket(client)


def _private_key_material(stack_dir: Path) -> list[str]:
    """Distinctive pieces of the IAM signing key (its PEM body and raw bytes)."""
    pem = stack_dir / "keys" / "signing.pem"
    if not pem.exists():
        return []
    lines = [x for x in pem.read_text().splitlines() if x and not x.startswith("-----")]
    body = "".join(lines)
    raw = base64.b64decode(body)[-32:]  # PKCS#8 Ed25519: the seed is the last 32 bytes
    return [body, base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), raw.hex()]


async def test_no_secret_reaches_any_log(base_url: str, stack_dir: Path) -> None:
    await _touch_every_secret_path(base_url)
    await asyncio.sleep(1)  # let every process flush its log lines
    logs = sorted((stack_dir / "logs").glob("*.log"))
    assert logs, "no logs found"
    secrets = {s for s in HANDLED if len(s) >= 12} | set(_private_key_material(stack_dir))
    assert len(secrets) >= 5, "the harness handled too few secrets for this check to mean much"
    found = []
    for log in logs:
        text = log.read_text(errors="replace")
        for s in secrets:
            if s in text:
                i = text.index(s)
                found.append(f"{log.name}: a secret: ...{text[max(0, i - 80) : i + 20]!r}")
        for what, pattern in SHAPES.items():
            m = pattern.search(text)
            if m:
                found.append(f"{log.name}: {what}: ...{text[max(0, m.start() - 80) : m.end()]!r}")
    assert not found, "\n".join(found[:20])
