"""The live leaderboard end to end: SCORE_CHANGE -> consumer group -> Redis manager ->
two socket.io processes -> clients, through nginx and directly to each process.

Real PostgreSQL, Redis, Kafka, nginx, IAM and two granian socket.io processes.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from services.common.kafka import EventProducer
from services.common.ranking import read_snapshots
from services.common.redis import get_redis
from services.common.settings import get_settings
from tests.conftest import ROOT, Api
from tests.test_realtime_support import Board, Player, Session, sio_ports

pytestmark = pytest.mark.stack

TRANSPORTS = [["websocket"], ["polling"]]


@pytest.fixture(scope="module")
async def board() -> AsyncIterator[Board]:
    conn = await asyncpg.create_pool(get_settings().database_url, min_size=1, max_size=8)
    producer = EventProducer()
    await producer.start()
    try:
        yield Board(conn, producer)
    finally:
        await producer.stop()
        await conn.close()


@pytest.fixture
async def players() -> AsyncIterator[list[Player]]:
    """Sockets made in a test; all closed at its end."""
    made: list[Player] = []
    yield made
    await asyncio.gather(*(p.close() for p in made), return_exceptions=True)


def new_player(made: list[Player], token: str | None, transports: list[str] | None = None):
    p = Player(token, transports)
    made.append(p)
    return p


async def new_session(api: Api, board: Board, n: int, **kw) -> Session:
    host = api.host()
    guests = [api.guest() for _ in range(n)]
    return await board.session(host, guests, **kw)


# --------------------------------------------------------------------------- connect


def _signed(key: Ed25519PrivateKey, kid: str, **override: object) -> str:
    s = get_settings()
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "role": "player",
        "nickname": "mallory",
        "iat": now,
        "exp": now + 300,
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "typ": "access",
    }
    claims.update(override)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


@pytest.fixture(scope="module")
def bad_tokens(stack_dir: Path, http) -> dict[str, str]:
    kid = http.get("/api/iam/jwks").json()["keys"][0]["kid"]
    tokens = {
        "forged": _signed(Ed25519PrivateKey.generate(), kid),
        "garbage": "not.a.jwt",
        "empty": "",
    }
    pem = stack_dir / "keys" / "signing.pem"
    if pem.exists():  # the stack's own key: a token IAM signed, only expired
        key = load_pem_private_key(pem.read_bytes(), password=None)
        tokens["expired"] = _signed(key, kid, iat=int(time.time()) - 900, exp=int(time.time()) - 30)
        tokens["refresh-typed"] = _signed(key, kid, typ="refresh")
    return tokens


async def test_bad_tokens_are_refused_at_connect_over_websocket(base_url, bad_tokens, players):
    assert "expired" in bad_tokens, "the test stack signs with a key file"
    for name, token in [*bad_tokens.items(), ("missing", None)]:
        p = new_player(players, token)
        with pytest.raises(socketio.exceptions.ConnectionError, match="namespaces failed"):
            if token is None:
                await p.client.connect(base_url, transports=["websocket"], wait_timeout=5)
            else:
                await p.connect(base_url)
        assert not p.client.connected, name


def polling_connect(http, token: str | None, query_token: bool = False) -> str:
    """Engine.io handshake + socket.io CONNECT over long-polling, spoken by hand (the
    Python client waits ~20 s for its last long-poll after a refusal). Returns the
    server's answer to CONNECT: ``40{...}`` accepted, ``44{...}`` refused."""
    path = "/socket.io/?EIO=4&transport=polling"
    if query_token and token:
        path += f"&token={token}"
    r = http.get(path)
    assert r.status_code == 200 and r.text.startswith("0"), r.text
    sid = json.loads(r.text[1:])["sid"]
    auth = "" if token is None or query_token else json.dumps({"token": token})
    r = http.post(f"{path}&sid={sid}", content=f"40{auth}")
    assert r.status_code == 200, r.text
    return http.get(f"{path}&sid={sid}").text


def test_bad_tokens_are_refused_at_connect_over_long_polling(http, api, bad_tokens):
    for name, token in [*bad_tokens.items(), ("missing", None)]:
        answer = polling_connect(http, token)
        assert answer.startswith("44"), (name, answer)
        assert "message" in json.loads(answer[2:])
    good = api.guest()["access_token"]
    assert polling_connect(http, good).startswith("40")
    assert polling_connect(http, good, query_token=True).startswith("40")


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["websocket", "polling"])
async def test_join_ack_carries_state_and_current_snapshot(
    api, board, base_url, transports, players
):
    s = await new_session(api, board, 3)
    await board.answer(s, s.user(1), 700)
    await board.answer(s, s.user(2), 900)
    want = (await read_snapshots(get_redis(), [s.id]))[s.id]

    p = new_player(players, s.players[0]["access_token"], transports)
    await p.connect(base_url)
    ack = await p.join(s.id)
    assert ack["ok"] is True, ack
    assert ack["state"] == "running" and ack["mode"] == "live" and ack["role"] == "player"
    lb = ack["leaderboard"]
    assert lb["session_id"] == s.id and lb["version"] == want.version and lb["players"] == 3
    assert [(e["user_id"], e["score"]) for e in lb["entries"]] == await board.expected_top(s)
    assert [e["nickname"] for e in lb["entries"]][:1] == [s.players[2]["user"]["nickname"]]
    # The open live question is not part of this session (no question opened yet).
    assert ack["question"] is None

    host = new_player(players, s.host["access_token"], transports)
    await host.connect(base_url, via_query=True)  # ?token= for clients without auth
    ack = await host.join(s.id)
    assert ack["ok"] is True and ack["role"] == "host", ack


async def test_join_is_refused_to_outsiders_and_malformed_payloads(api, board, base_url, players):
    s = await new_session(api, board, 1)
    outsider = new_player(players, api.guest()["access_token"])
    await outsider.connect(base_url)
    assert await outsider.join(s.id) == {"ok": False, "error": outsider_error()}
    assert (await outsider.join(str(uuid.uuid4())))["error"] == "unknown session"
    assert (await outsider.join("not-a-uuid"))["error"] == "unknown session"
    for bad in ([{"session": s.id}], [42], ["text"], [None], [{"session_id": 7}], []):
        ack = await outsider.call("join", *bad)
        assert ack["ok"] is False and ack["error"].startswith("invalid payload"), (bad, ack)
    assert (await outsider.call("no_such_event", {}))["ok"] is False
    assert (await outsider.call("leave", {"session_id": s.id})) == {"ok": True}
    assert outsider.client.connected  # nothing above closed the socket


def outsider_error() -> str:
    return "not a participant of this session: join it first"


async def test_excess_events_are_dropped(api, board, base_url, players):
    s = await new_session(api, board, 1)
    p = new_player(players, s.players[0]["access_token"])
    await p.connect(base_url)
    limit = get_settings().sio_events_per_second
    acks = await asyncio.gather(*(p.join(s.id) for _ in range(limit * 3)))
    limited = [a for a in acks if a == {"ok": False, "error": "rate limited"}]
    assert len(limited) >= limit, acks
    assert sum(a["ok"] for a in acks) >= limit // 2


# --------------------------------------------------------------------------- broadcasts


async def test_players_on_both_processes_receive_the_same_events_in_order(
    api, board, base_url, stack_dir, players
):
    s = await new_session(api, board, 6)
    other = await new_session(api, board, 1)
    ports = sio_ports(stack_dir)
    assert len(ports) >= 2
    # Players 0-1 straight to sio-1, 2-3 to sio-2; 4 by websocket and 5 by long-polling
    # through nginx; one player of another session.
    urls = [f"http://127.0.0.1:{ports[0]}"] * 2 + [f"http://127.0.0.1:{ports[1]}"] * 2
    conns = [new_player(players, s.players[i]["access_token"]) for i in range(4)]
    conns.append(new_player(players, s.players[4]["access_token"], ["websocket"]))
    conns.append(new_player(players, s.players[5]["access_token"], ["polling"]))
    urls += [base_url, f"{base_url}/?sticky={uuid.uuid4().hex}"]
    stranger = new_player(players, other.players[0]["access_token"])
    await asyncio.gather(
        *(p.connect(u) for p, u in zip(conns, urls, strict=True)), stranger.connect(base_url)
    )
    acks = await asyncio.gather(*(p.join(s.id) for p in conns), stranger.join(other.id))
    assert all(a["ok"] for a in acks), acks

    sent: dict[int, float] = {}
    last = 0
    for i in range(30):
        t0 = time.time()
        last = await board.answer(s, s.user(i % 6), 100 + 37 * i)
        sent[last] = t0
        await asyncio.sleep(0.02)
    finals = await asyncio.gather(*(p.wait_for_version(last) for p in conns))

    expected = await board.expected_top(s)
    for final in finals:
        assert [(e["user_id"], e["score"]) for e in final["entries"]] == expected
        assert final["players"] == 6
    seqs = [p.versions(s.id) for p in conns]
    assert seqs[0] == sorted(set(seqs[0])), "versions strictly increase"
    assert all(seq == seqs[0] for seq in seqs), seqs
    assert stranger.boards == []
    latencies = [
        (t - sent[d["version"]]) * 1000 for d, t in conns[0].boards if d["version"] in sent
    ]
    print(
        f"\nproduce->receive: {len(latencies)} events, median "
        f"{statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )


async def test_a_burst_is_coalesced_into_few_broadcasts(api, board, base_url, players):
    s = await new_session(api, board, 20)
    p = new_player(players, s.players[0]["access_token"])
    await p.connect(base_url)
    assert (await p.join(s.id))["ok"]
    versions = await asyncio.gather(*(board.answer(s, s.user(i % 20), 10 + i) for i in range(300)))
    final = await p.wait_for_version(max(versions))
    assert [(e["user_id"], e["score"]) for e in final["entries"]] == await board.expected_top(s)
    await asyncio.sleep(0.3)  # nothing more may come after the final snapshot
    assert len(p.boards) < 100, f"{len(p.boards)} broadcasts for 300 answers"
    assert p.versions() == sorted(set(p.versions()))


async def test_reconnecting_with_the_same_token_rejoins_without_a_new_player(
    api, board, base_url, players
):
    s = await new_session(api, board, 2)
    token = s.players[0]["access_token"]
    first = new_player(players, token)
    await first.connect(base_url)
    assert (await first.join(s.id))["leaderboard"]["players"] == 2
    await first.close()
    version = await board.answer(s, s.user(1), 500)  # missed while away
    again = new_player(players, token, ["polling"])
    await again.connect(base_url)
    ack = await again.join(s.id)
    assert ack["ok"] and ack["leaderboard"]["players"] == 2
    assert ack["leaderboard"]["version"] >= version  # the ack covers the gap
    assert ack["leaderboard"]["entries"][0]["score"] == 500
    rows = await board.conn.fetchval(
        "select count(*) from session_player where session_id = $1", uuid.UUID(s.id)
    )
    assert rows == 2


# --------------------------------------------------------------------------- faults


def stack_cmd(stack_dir: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "infra.stack", "--dir", str(stack_dir), *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )


async def test_consumer_killed_mid_stream_still_ends_on_the_right_board(
    api, board, base_url, stack_dir, players
):
    s = await new_session(api, board, 8)
    ports = sio_ports(stack_dir)
    watchers = [new_player(players, s.players[i]["access_token"]) for i in range(2)]
    await asyncio.gather(
        *(w.connect(f"http://127.0.0.1:{port}") for w, port in zip(watchers, ports, strict=False))
    )
    acks = await asyncio.gather(*(w.join(s.id) for w in watchers))
    assert all(a["ok"] for a in acks), acks

    last = 0
    for i in range(40):
        last = await board.answer(s, s.user(i % 8), 50 + i)
        if i == 15:
            await asyncio.to_thread(stack_cmd, stack_dir, "kill", "consumer-1")
        await asyncio.sleep(0.01)
    t_restart = time.monotonic()
    await asyncio.to_thread(stack_cmd, stack_dir, "restart", "consumer-1")
    print(f"\nrestart cmd {time.monotonic() - t_restart:.1f}s")
    finals = await asyncio.gather(*(w.wait_for_version(last, timeout=20) for w in watchers))
    print(f"final after restart {time.monotonic() - t_restart:.1f}s")
    expected = await board.expected_top(s)
    for final in finals:
        assert [(e["user_id"], e["score"]) for e in final["entries"]] == expected
    for w in watchers:
        assert w.versions() == sorted(w.versions()), "never an older snapshot after a newer one"
