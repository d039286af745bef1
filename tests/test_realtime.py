"""The live leaderboard end to end: answers through nginx -> quiz service -> outbox ->
SCORE_CHANGE -> consumer group -> Redis manager -> two socket.io processes -> clients,
through nginx (websocket and long-polling) and directly to each process.

Real PostgreSQL, Redis, Kafka, nginx, IAM, quiz service and two granian socket.io
processes. Tests of the consumer alone (bursts) write answers the way the quiz
service does (``Board``).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import socketio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.kafka import EventProducer
from services.common.settings import get_settings
from tests.support.api import Api
from tests.support.game import Board, LiveGame, Session
from tests.support.player import Player, latencies_ms
from tests.support.stack import sio_ports, stack_cmd
from tests.support.tokens import claims, keyring, sign_with

pytestmark = pytest.mark.stack

TRANSPORTS = [["websocket"], ["polling"]]


@pytest.fixture(scope="module")
async def pg() -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(get_settings().database_url, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def board(pg: asyncpg.Pool) -> AsyncIterator[Board]:
    producer = EventProducer()
    await producer.start()
    try:
        yield Board(pg, producer)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def aio_http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An async client of nginx, so answers and sockets share the event loop."""
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as c:
        yield c


@pytest.fixture
async def players() -> AsyncIterator[list[Player]]:
    """Sockets made in a test; all closed at its end."""
    made: list[Player] = []
    yield made
    await asyncio.gather(*(p.close() for p in made), return_exceptions=True)


def new_player(
    made: list[Player], token: str | None, transports: list[str] | None = None
) -> Player:
    p = Player(token, transports)
    made.append(p)
    return p


async def connected(
    made: list[Player], url: str, token: str | None, transports: list[str] | None = None
) -> Player:
    """A new player, connected to ``url``."""
    p = new_player(made, token, transports)
    await p.connect(url)
    return p


async def new_session(api: Api, board: Board, n: int, **kw: Any) -> Session:
    host = api.host()
    guests = [api.guest() for _ in range(n)]
    return await board.session(host, guests, **kw)


async def first_player(
    api: Api, board: Board, made: list[Player], url: str, n: int
) -> tuple[Session, Player]:
    """A new session of ``n`` guests, and its first player connected to ``url``."""
    s = await new_session(api, board, n)
    return s, await connected(made, url, s.players[0]["access_token"])


# --------------------------------------------------------------------------- connect


def _signed(key: Ed25519PrivateKey, kid: str, **override: object) -> str:
    return sign_with(key, claims(str(uuid.uuid4()), "player", **override), kid)


@pytest.fixture(scope="module")
def bad_tokens(stack_dir: Path, http: httpx.Client) -> dict[str, str]:
    kid = http.get("/api/iam/jwks").json()["keys"][0]["kid"]
    key = keyring(stack_dir).signing_key  # the stack's own key: tokens IAM signed, but bad
    return {
        "forged": _signed(Ed25519PrivateKey.generate(), kid),
        "garbage": "not.a.jwt",
        "empty": "",
        "expired": _signed(key, kid, iat=int(time.time()) - 900, exp=int(time.time()) - 30),
        "refresh-typed": _signed(key, kid, typ="refresh"),
    }


async def test_bad_tokens_are_refused_at_connect_over_websocket(
    base_url: str, bad_tokens: dict[str, str], players: list[Player]
) -> None:
    assert "expired" in bad_tokens, "the test stack signs with a key file"
    for name, token in [*bad_tokens.items(), ("missing", None)]:
        p = new_player(players, token)
        with pytest.raises(socketio.exceptions.ConnectionError, match="namespaces failed"):
            if token is None:
                await p.client.connect(base_url, transports=["websocket"], wait_timeout=5)
            else:
                await p.connect(base_url)
        assert not p.client.connected, name


def polling_connect(http: httpx.Client, token: str | None, query_token: bool = False) -> str:
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


def test_bad_tokens_are_refused_at_connect_over_long_polling(
    http: httpx.Client, api: Api, bad_tokens: dict[str, str]
) -> None:
    for name, token in [*bad_tokens.items(), ("missing", None)]:
        answer = polling_connect(http, token)
        assert answer.startswith("44"), (name, answer)
        assert "message" in json.loads(answer[2:])
    good = api.guest()["access_token"]
    assert polling_connect(http, good).startswith("40")
    # A token in the URL is refused by nginx before it reaches a log or a process.
    r = http.get(f"/socket.io/?EIO=4&transport=polling&token={good}")
    assert r.status_code == 400 and r.json()["status_code"] == 400


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["websocket", "polling"])
async def test_join_ack_carries_state_question_and_current_snapshot(
    api: Api,
    pg: asyncpg.Pool,
    aio_http: httpx.AsyncClient,
    base_url: str,
    transports: list[str],
    players: list[Player],
) -> None:
    game = await asyncio.to_thread(LiveGame, api, 3)
    qid = await asyncio.to_thread(game.advance)
    await game.answer(aio_http, 1)
    await game.answer(aio_http, 2, correct=False)

    p = await connected(players, base_url, game.players[0]["access_token"], transports)
    ack = await p.join(game.id)
    assert ack["ok"] is True, ack
    assert (ack["state"], ack["mode"], ack["role"]) == ("running", "live", "player")
    lb = ack["leaderboard"]
    assert lb["session_id"] == game.id and lb["players"] == 3
    assert lb["version"] >= game.last_version
    assert [(e["user_id"], e["score"]) for e in lb["entries"]] == await game.expected_top(pg)
    assert lb["entries"][0]["nickname"] == game.players[1]["user"]["nickname"]
    # The open live question, so a late joiner can answer at once; never its answer.
    q = ack["question"]
    assert q["question_id"] == qid and q["index"] == 0 and q["count"] == 3
    assert q["deadline_ms"] > q["server_time_ms"] and "answer" not in q

    host = await connected(players, base_url, game.host["access_token"], transports)
    ack = await host.join(game.id)
    assert ack["ok"] is True and ack["role"] == "host", ack


async def test_join_is_refused_to_outsiders_and_malformed_payloads(
    api: Api, board: Board, base_url: str, players: list[Player]
) -> None:
    s = await new_session(api, board, 1)
    outsider = await connected(players, base_url, api.guest()["access_token"])
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


async def test_excess_events_are_dropped(
    api: Api, board: Board, base_url: str, players: list[Player]
) -> None:
    s, p = await first_player(api, board, players, base_url, 1)
    rate = get_settings().sio_events_per_second  # a token bucket per socket, burst = rate
    count = rate * 3
    for _ in range(4):
        start = time.monotonic()
        acks = await asyncio.gather(*(p.join(s.id) for _ in range(count)))
        took = time.monotonic() - start
        limited = [a for a in acks if not a["ok"] and a["error"] == "rate limited"]
        accepted = sum(a["ok"] for a in acks)
        # The burst passes, then `rate` per second at most, whatever the machine's speed.
        assert rate // 2 <= accepted <= rate * (1 + took) + 1, (accepted, f"{took:.2f}s")
        if limited:
            assert all(a["retry_after_ms"] > 0 for a in limited), "a temporary refusal says when"
            return
        # A machine too busy to send faster than the bucket refills: more, once it is full.
        count *= 2
        await asyncio.sleep(1.5)
    raise AssertionError(f"{count // 2} events in {took:.1f}s and none refused")


# --------------------------------------------------------------------------- broadcasts


async def test_players_on_both_processes_receive_the_same_events_in_order(
    api: Api,
    pg: asyncpg.Pool,
    aio_http: httpx.AsyncClient,
    base_url: str,
    stack_dir: Path,
    players: list[Player],
) -> None:
    game = await asyncio.to_thread(LiveGame, api, 8)
    other = await asyncio.to_thread(LiveGame, api, 1, 1)
    ports = sio_ports(stack_dir)
    assert len(ports) >= 2
    # Players 0-1 straight to sio-1, 2-3 to sio-2; 4 by websocket and 5 by long-polling
    # through nginx; and a player of another session that also gets an answer.
    conns = [new_player(players, game.players[i]["access_token"]) for i in range(5)]
    conns.append(new_player(players, game.players[5]["access_token"], ["polling"]))
    urls = [f"http://127.0.0.1:{ports[0]}"] * 2 + [f"http://127.0.0.1:{ports[1]}"] * 2
    urls += [base_url, f"{base_url}/?sticky={uuid.uuid4().hex}"]
    stranger = new_player(players, other.players[0]["access_token"])
    await asyncio.gather(
        *(p.connect(u) for p, u in zip(conns, urls, strict=True)), stranger.connect(base_url)
    )
    acks = await asyncio.gather(*(p.join(game.id) for p in conns), stranger.join(other.id))
    assert all(a["ok"] for a in acks), acks

    await asyncio.to_thread(other.advance)
    await other.answer(aio_http, 0)
    for q in range(3):
        await asyncio.to_thread(game.advance)
        await asyncio.gather(
            *(game.answer(aio_http, i, correct=(i + q) % 4 != 0) for i in range(8))
        )
    finals = await asyncio.gather(*(p.wait_for_version(game.last_version) for p in conns))

    expected = await game.expected_top(pg)
    for final in finals:
        assert [(e["user_id"], e["score"]) for e in final["entries"]] == expected
        assert final["players"] == 8
    seqs = [p.versions(game.id) for p in conns]
    assert seqs[0] == sorted(set(seqs[0])), "versions strictly increase"
    assert all(seq == seqs[0] for seq in seqs), seqs
    assert {d["session_id"] for d, _ in stranger.boards} <= {other.id}
    assert all(d["session_id"] == game.id for p in conns for d, _ in p.boards)
    lat = latencies_ms(game.replies, conns[0])
    print(
        f"\nanswer reply -> leaderboard event: {len(lat)} answers, median "
        f"{statistics.median(lat):.1f} ms, max {max(lat):.1f} ms"
    )


async def test_a_burst_is_coalesced_into_few_broadcasts(
    api: Api, board: Board, base_url: str, players: list[Player]
) -> None:
    s, p = await first_player(api, board, players, base_url, 20)
    assert (await p.join(s.id))["ok"]
    versions = await asyncio.gather(*(board.answer(s, s.user(i % 20), 10 + i) for i in range(300)))
    final = await p.wait_for_version(max(versions))
    assert [(e["user_id"], e["score"]) for e in final["entries"]] == await board.expected_top(s)
    await asyncio.sleep(0.3)  # nothing more may come after the final snapshot
    assert len(p.boards) < 100, f"{len(p.boards)} broadcasts for 300 answers"
    assert p.versions() == sorted(set(p.versions()))


async def test_reconnecting_with_the_same_token_rejoins_without_a_new_player(
    api: Api, pg: asyncpg.Pool, aio_http: httpx.AsyncClient, base_url: str, players: list[Player]
) -> None:
    game = await asyncio.to_thread(LiveGame, api, 2)
    token = game.players[0]["access_token"]
    first = await connected(players, base_url, token)
    assert (await first.join(game.id))["leaderboard"]["players"] == 2
    await first.close()
    await asyncio.to_thread(game.advance)
    reply = await game.answer(aio_http, 1)  # missed while away
    again = await connected(players, base_url, token, ["polling"])
    ack = await again.join(game.id)
    assert ack["ok"] and ack["leaderboard"]["players"] == 2
    assert ack["leaderboard"]["version"] >= reply["version"]  # the ack covers the gap
    assert ack["leaderboard"]["entries"][0]["score"] == reply["score"] > 0
    assert ack["question"]["index"] == 0
    rows = await pg.fetchval(
        "select count(*) from session_player where session_id = $1", uuid.UUID(game.id)
    )
    assert rows == 2


# --------------------------------------------------------------------------- faults


# ./dev test runs this test in its 'alone' phase (infra/stack/cli.py, PHASES): it kills
# and restarts the consumer. The module's other tests run in the shared phase.
@pytest.mark.alone
async def test_consumer_killed_mid_stream_still_ends_on_the_right_board(
    api: Api,
    pg: asyncpg.Pool,
    aio_http: httpx.AsyncClient,
    base_url: str,
    stack_dir: Path,
    players: list[Player],
) -> None:
    game = await asyncio.to_thread(LiveGame, api, 8)
    ports = sio_ports(stack_dir)
    watchers = [new_player(players, game.players[i]["access_token"]) for i in range(2)]
    await asyncio.gather(
        *(w.connect(f"http://127.0.0.1:{port}") for w, port in zip(watchers, ports, strict=False))
    )
    acks = await asyncio.gather(*(w.join(game.id) for w in watchers))
    assert all(a["ok"] for a in acks), acks

    async def answer_all(correct_every: int) -> None:
        for i in range(8):
            await game.answer(aio_http, i, correct=i % correct_every != 0)
            await asyncio.sleep(0.01)

    await asyncio.to_thread(game.advance)
    await answer_all(3)
    await asyncio.to_thread(game.advance)
    # SIGKILL while this question's answers flow; restart before the last question.
    answering = asyncio.create_task(answer_all(2))
    await asyncio.sleep(0.03)
    await asyncio.to_thread(stack_cmd, stack_dir, "kill", "consumer-1")
    await answering
    await asyncio.to_thread(stack_cmd, stack_dir, "restart", "consumer-1")
    await asyncio.to_thread(game.advance)
    await answer_all(4)
    finals = await asyncio.gather(
        *(w.wait_for_version(game.last_version, timeout=45) for w in watchers)
    )
    expected = await game.expected_top(pg)
    for final in finals:
        assert [(e["user_id"], e["score"]) for e in final["entries"]] == expected
    for w in watchers:
        assert w.versions() == sorted(w.versions()), "never an older snapshot after a newer one"
