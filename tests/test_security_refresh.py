"""Refresh-token rotation races, through nginx: no refresh token outlives the
revocation of its family.

A reused refresh token revokes its whole family. Before the rotation and the
revocation were serialized per family, a refresh in flight while the family was
revoked returned a new token that nothing had revoked: an attacker refreshing in
a loop went on after the victim's reuse in 3 of 5 trials, and a token issued by
refreshing R2 while R1 was reused kept working in 16 of 25. Each scenario runs
30 times, so a race firing in a third of trials goes unseen with probability
(2/3)^30, about 5 in a million.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from tests.chaos.secrets import remember_tokens
from tests.conftest import next_loopback, unique

pytestmark = pytest.mark.stack

TRIALS = 30
ATTACKER_CAP = 40  # refreshes: a loop that is never stopped ends here (and fails the test)


@pytest_asyncio.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of its own source address (nginx limits guests per address)."""
    transport = httpx.AsyncHTTPTransport(local_address=next_loopback())
    async with httpx.AsyncClient(base_url=base_url, transport=transport, timeout=20) as c:
        yield c


async def _guest(c: httpx.AsyncClient) -> dict:
    r = await c.post("/api/iam/guests", json={"nickname": unique("r")})
    assert r.status_code == 201, r.text
    remember_tokens(r.json())
    return r.json()


async def _refresh(c: httpx.AsyncClient, token: str) -> httpx.Response:
    for _ in range(20):
        r = await c.post("/api/iam/token/refresh", json={"refresh_token": token})
        if r.status_code != 429:
            if r.status_code == 200:
                remember_tokens(r.json())
            return r
        await asyncio.sleep(float(r.headers.get("retry-after", 1)))
    raise AssertionError("rate limited throughout")


async def _attacker_vs_victim(c: httpx.AsyncClient, rng: random.Random) -> list[str]:
    """The attacker refreshes the victim's current token in a loop; the victim
    presents the same token meanwhile. Returns what went wrong (empty: nothing)."""
    first = await _guest(c)
    current = (await _refresh(c, first["refresh_token"])).json()["refresh_token"]
    victim_replied = asyncio.Event()
    after_reply: list[int] = []  # attacker successes that started after the victim's reply
    issued: list[str] = []

    async def attacker() -> None:
        token = current
        for _ in range(ATTACKER_CAP):
            started_after = victim_replied.is_set()
            r = await _refresh(c, token)
            if r.status_code != 200:
                return
            token = r.json()["refresh_token"]
            issued.append(token)
            if started_after:
                after_reply.append(1)

    async def victim() -> httpx.Response:
        await asyncio.sleep(rng.uniform(0, 0.05))
        try:
            return await _refresh(c, current)
        finally:
            victim_replied.set()

    attack = asyncio.create_task(attacker())
    victim_reply = await victim()
    await asyncio.wait_for(attack, 60)
    problems = []
    if len(issued) >= ATTACKER_CAP:
        problems.append(f"the attacker's loop never stopped ({len(issued)} refreshes)")
    if after_reply:
        problems.append(f"{len(after_reply)} attacker refreshes succeeded after the victim's reply")
    survivors = [issued[-1]] if issued else []
    if victim_reply.status_code == 200:
        survivors.append(victim_reply.json()["refresh_token"])
    for token in survivors:
        r = await _refresh(c, token)
        if r.status_code != 401:
            problems.append(f"a token of the revoked family still refreshes: {r.status_code}")
    return problems


async def test_attacker_refresh_loop_stops_when_the_victim_reuses(
    client: httpx.AsyncClient,
) -> None:
    rng = random.Random(12)
    failures = []
    for trial in range(TRIALS):
        for problem in await _attacker_vs_victim(client, rng):
            failures.append(f"trial {trial}: {problem}")
    assert not failures, "\n".join(failures)


async def test_refreshing_r2_while_r1_is_reused_leaves_no_working_token(
    client: httpx.AsyncClient,
) -> None:
    failures = []
    for trial in range(TRIALS):
        r1 = (await _guest(client))["refresh_token"]
        r2 = (await _refresh(client, r1)).json()["refresh_token"]
        # At the same moment: the holder of R2 rotates it, a copy of R1 is replayed.
        rotate, reuse = await asyncio.gather(_refresh(client, r2), _refresh(client, r1))
        assert reuse.status_code == 401, reuse.text
        assert "reused" in reuse.json()["detail"], reuse.text
        if rotate.status_code == 200:
            r3 = rotate.json()["refresh_token"]
            after = await _refresh(client, r3)
            if after.status_code != 401:
                failures.append(f"trial {trial}: R3 still refreshes ({after.status_code})")
        # Whatever the order, the family is revoked: R2 works no more.
        again = await _refresh(client, r2)
        if again.status_code != 401:
            failures.append(f"trial {trial}: R2 still refreshes ({again.status_code})")
    assert not failures, "\n".join(failures)


async def test_rotation_still_works_and_a_reuse_is_told_apart(client: httpx.AsyncClient) -> None:
    """Control: plain rotation chains; an unknown token is 'unknown', a reused one 'reused'."""
    token = (await _guest(client))["refresh_token"]
    chain = [token]
    for _ in range(5):
        r = await _refresh(client, chain[-1])
        assert r.status_code == 200, r.text
        chain.append(r.json()["refresh_token"])
    r = await _refresh(client, "not-a-token-" + unique())
    assert r.status_code == 401 and "unknown" in r.json()["detail"], r.text
    r = await _refresh(client, chain[2])
    assert r.status_code == 401 and "reused" in r.json()["detail"], r.text
    r = await _refresh(client, chain[-1])
    assert r.status_code == 401, r.text
