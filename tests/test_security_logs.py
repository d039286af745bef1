"""No traceback in any log of the stack while it is probed with hostile input.

Each finding of the outside probe that was a 500 or a dropped socket.io packet
also wrote a traceback per attempt. This module replays them (deep JSON, NUL,
strict types, another algorithm under the real ``kid``, other spellings of a
session id, a deep socket.io payload, wrong join codes, refresh races) and then
reads only what the logs gained meanwhile: no traceback, no error line.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives.asymmetric import ec

from tests.chaos.game import Game, Plan
from tests.chaos.player import close_socket
from tests.conftest import next_loopback
from tests.support.tokens import claims, hostile_tokens, keyring

# ./dev test runs this module in its 'last' phase (infra/stack/cli.py, PHASES):
# no error may reach any log during its window.
pytestmark = [pytest.mark.stack, pytest.mark.last]


def _sizes(stack_dir: Path) -> dict[Path, int]:
    return {log: log.stat().st_size for log in (stack_dir / "logs").glob("*.log")}


def _grown(stack_dir: Path, before: dict[Path, int]) -> dict[str, str]:
    grown = {}
    for log in _sizes(stack_dir):
        with log.open("rb") as f:
            f.seek(before.get(log, 0))
            grown[log.name] = f.read().decode(errors="replace")
    return grown


async def _probe(g: Game, stack_dir: Path, base_url: str) -> None:
    ring = keyring(stack_dir)
    p = g.players[0]
    sid = g.session_id
    transport = httpx.AsyncHTTPTransport(local_address=next_loopback())
    async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=20) as c:
        deep = "[" * 1500 + "]" * 1500
        json_headers = {"Content-Type": "application/json"}
        for path, headers in (
            ("/api/iam/guests", {}),
            ("/api/iam/token/refresh", {}),
            ("/api/quiz/sessions/join", p.headers),
            (f"/api/quiz/sessions/{sid}/answers", p.headers),
        ):
            r = await c.post(path, content=deep, headers={**headers, **json_headers})
            assert r.status_code in (400, 429), (path, r.status_code, r.text[:200])
        for path, body in (
            ("/api/quiz/sessions/join", {"code": "12\u00003"}),
            (f"/api/quiz/sessions/{sid}/answers", {"question_id": "q\u0000", "choice": 0}),
            (f"/api/quiz/sessions/{sid}/answers", {"question_id": "q", "choice": "1"}),
        ):
            r = await c.post(path, json=body, headers=p.headers)
            assert r.status_code == 422, (path, r.text[:200])
        for name, token in hostile_tokens(ring, p.tokens["access_token"], p.user_id).items():
            r = await c.get(
                f"/api/leaderboard/sessions/{sid}/top", headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 401, (name, r.status_code)
        u = uuid.UUID(sid)
        for other in (sid.upper(), u.hex, u.urn, "{" + sid + "}"):
            r = await c.get(f"/api/leaderboard/sessions/{other}/top", headers=p.headers)
            assert r.status_code == 404, (other, r.status_code)
        for i in range(5):
            r = await c.post("/api/quiz/sessions/join", json={"code": f"x{i}"}, headers=p.headers)
            assert r.status_code == 404
    es256 = jwt.encode(
        claims(p.user_id),
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": ring.signing_kid},
    )
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            base_url, auth={"token": es256}, transports=["websocket"], wait_timeout=10
        )
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        base_url,
        auth={"token": p.tokens["access_token"]},
        transports=["websocket"],
        wait_timeout=10,
    )
    try:
        got: asyncio.Future = asyncio.get_running_loop().create_future()
        ack_id = client._generate_ack_id("/", lambda *a: None if got.done() else got.set_result(a))
        await client.eio.send(f'2{ack_id}["join",{"[" * 3000}{"]" * 3000}]')
        await asyncio.wait_for(got, 5)
        for other in (sid.upper(), u.hex):
            ack = await client.call("join", {"session_id": other}, timeout=5)
            assert ack["ok"] is False
    finally:
        await close_socket(client)


def _bad(line: str) -> bool:
    """A traceback, an error of a service (``ERROR - ...``), PostgreSQL or nginx."""
    if "limiting requests" in line:  # nginx notes each 429 at error level
        return False
    return (
        "Traceback" in line
        or line.startswith(("ERROR - ", "CRITICAL - "))
        or " ERROR: " in line
        or "[error]" in line
        or "[crit]" in line
    )


async def test_no_traceback_while_the_stack_is_probed(stack_dir: Path, base_url: str) -> None:
    g = Game(base_url, Plan(players=1, questions=1, mode="live"))
    await g.setup(connect=False)
    try:
        await asyncio.sleep(0.5)  # set-up lines are written before the mark
        before = _sizes(stack_dir)
        await _probe(g, stack_dir, base_url)
        await asyncio.sleep(1.0)  # let the processes flush their logs
    finally:
        await g.close()
    found = [
        f"{name}: {line[:200]}"
        for name, text in _grown(stack_dir, before).items()
        for line in text.splitlines()
        if _bad(line)
    ]
    assert not found, "\n".join(found[:40])
