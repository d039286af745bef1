"""The socket.io side of the outside probe's findings, through nginx.

A token signed with another algorithm under the real ``kid`` got no reply at all
(now: a refused connect, with its reason); a deeply nested payload was dropped
with a traceback (now: an ErrorAck); another spelling of a session id acked ok
and then delivered nothing (now: "unknown session"); a socket stayed authorized
past its token's ``exp`` (now: ``token_expired``, then disconnected, and a new
token reconnects and joins again).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
import socketio
from cryptography.hazmat.primitives.asymmetric import ec

from tests.chaos.game import Game, Plan, started
from tests.chaos.player import close_socket
from tests.support.tokens import claims, keyring, sign

pytestmark = pytest.mark.stack


@pytest_asyncio.fixture(scope="module")
async def game(base_url: str) -> AsyncIterator[Game]:
    async with started(base_url, Plan(players=2, questions=2, mode="live", time_limit_s=30)) as g:
        yield g


async def _socket(base_url: str, token: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(base_url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    return client


async def _raw_call(client: socketio.AsyncClient, body: str, timeout: float = 5) -> Any:
    """Send ``42<id>`` + ``body`` as it is (no client-side JSON encoding) and wait for the ack."""
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    ack_id = client._generate_ack_id(
        "/", lambda *a: None if got.done() else got.set_result(a[0] if a else None)
    )
    await client.eio.send(f"2{ack_id}{body}")
    return await asyncio.wait_for(got, timeout)


async def test_another_algorithm_under_the_real_kid_is_refused_with_a_reason(
    game: Game, stack_dir: Path, base_url: str
) -> None:
    ring = keyring(stack_dir)
    good = claims(game.players[0].user_id)
    es256 = jwt.encode(
        good,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": ring.signing_kid},
    )
    started = time.monotonic()
    client = socketio.AsyncClient(reconnection=False)
    reasons: list[Any] = []
    client.on("connect_error", lambda data=None: reasons.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            base_url, auth={"token": es256}, transports=["websocket"], wait_timeout=10
        )
    # A reply (the refusal's reason), not the client giving up for lack of one.
    assert reasons and "algorithm" in str(reasons[0]), reasons
    assert time.monotonic() - started < 8


async def test_deeply_nested_payload_gets_an_error_ack(game: Game, base_url: str) -> None:
    p = game.players[0]
    client = await _socket(base_url, p.tokens["access_token"])
    try:
        for body in (
            '["join",' + "[" * 3000 + "]" * 3000 + "]",
            '["join",' + '{"a":' * 3000 + "1" + "}" * 3000 + "]",
        ):
            ack = await _raw_call(client, body)
            assert ack == {"ok": False, "error": "invalid payload: nested too deep"}, ack
        # The socket still works.
        ack = await client.call("join", {"session_id": game.session_id}, timeout=5)
        assert ack["ok"] is True, ack
    finally:
        await close_socket(client)


async def test_join_with_another_spelling_of_the_session_id_is_refused(
    game: Game, base_url: str
) -> None:
    p = game.players[0]
    u = uuid.UUID(game.session_id)
    client = await _socket(base_url, p.tokens["access_token"])
    try:
        for other in (game.session_id.upper(), u.hex, "{" + game.session_id + "}", u.urn):
            ack = await client.call("join", {"session_id": other}, timeout=5)
            assert ack == {"ok": False, "error": "unknown session"}, (other, ack)
    finally:
        await close_socket(client)


async def test_socket_is_told_and_disconnected_when_its_token_expires(
    game: Game, stack_dir: Path, base_url: str
) -> None:
    ring = keyring(stack_dir)
    p = game.players[1]
    short = sign(ring, claims(p.user_id, nickname=p.nickname, exp=int(time.time()) + 4))
    told: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
    gone = asyncio.Event()
    client = socketio.AsyncClient(reconnection=False)
    client.on("token_expired", lambda data: None if told.done() else told.set_result(data))
    client.on("disconnect", lambda *_: gone.set())
    await client.connect(base_url, auth={"token": short}, transports=["websocket"], wait_timeout=10)
    try:
        ack = await client.call("join", {"session_id": game.session_id}, timeout=5)
        assert ack["ok"] is True, ack
        event = await asyncio.wait_for(told, 20)
        assert event["exp"] == jwt.decode(short, options={"verify_signature": False})["exp"]
        await asyncio.wait_for(gone.wait(), 10)
        assert not client.connected
        assert time.time() >= event["exp"] - 1
    finally:
        await close_socket(client)
    # The expired token is refused from now on; a fresh one connects and joins again.
    with pytest.raises(socketio.exceptions.ConnectionError):
        await _socket(base_url, short)
    fresh = sign(ring, claims(p.user_id, nickname=p.nickname))
    again = await _socket(base_url, fresh)
    try:
        ack = await again.call("join", {"session_id": game.session_id}, timeout=5)
        assert ack["ok"] is True and ack["role"] == "player", ack
    finally:
        await close_socket(again)


async def test_a_long_lived_token_is_not_disconnected(game: Game, base_url: str) -> None:
    """Control: IAM's tokens (minutes) keep their socket meanwhile."""
    p = game.players[0]
    client = await _socket(base_url, p.tokens["access_token"])
    try:
        await asyncio.sleep(3)
        assert client.connected
        ack = await client.call("join", {"session_id": game.session_id}, timeout=5)
        assert ack["ok"] is True, ack
    finally:
        await close_socket(client)
