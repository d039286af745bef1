"""Every process of the stack serves its Prometheus ``/metrics`` on its own port
(``layout.metrics_ports`` of stack.json, not routed by nginx) with the hop
histogram; after one answer of a live game the consumer has observed its hops and
the socket.io processes the emit -> delivered hop."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest

from infra.stack import read_layout
from tests.support.api import Api
from tests.support.game import LiveGame

pytestmark = pytest.mark.stack

HOP = "quizrt_hop_seconds"


def metrics_ports(stack_dir: Path) -> dict[str, int]:
    return read_layout(stack_dir).metrics_ports


def scrape(port: int) -> str:
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200
    return r.text


def hop_count(text: str, hop: str) -> float:
    m = re.search(rf'^{HOP}_count{{hop="{hop}"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_every_process_serves_the_hop_histogram(stack_dir: Path, http: httpx.Client) -> None:
    ports = metrics_ports(stack_dir)
    kinds = {name.rsplit("-", 1)[0] for name in ports}
    assert {"iam", "quiz", "leaderboard", "sio", "consumer"} <= kinds, ports
    for name, port in ports.items():
        text = scrape(port)
        assert f"# TYPE {HOP} histogram" in text, f"{name}: no hop histogram"
    # Not public: nginx has no route to it.
    assert HOP not in http.get("/metrics").text


async def test_an_answer_is_observed_by_the_consumer_and_the_socket_tier(
    stack_dir: Path, api: Api
) -> None:
    ports = metrics_ports(stack_dir)
    consumer = [p for n, p in ports.items() if n.startswith("consumer-")]
    sio = [p for n, p in ports.items() if n.startswith("sio-")]
    before_c = sum(hop_count(scrape(p), "read_emit") for p in consumer)
    before_s = [hop_count(scrape(p), "emit_deliver") for p in sio]
    game = await asyncio.to_thread(LiveGame, api, 2)
    await asyncio.to_thread(game.advance)
    async with httpx.AsyncClient(base_url=str(api.http.base_url), timeout=20) as aio:
        await game.answer(aio, 0)
    deadline = time.monotonic() + 15
    while True:
        read_emit = sum(hop_count(scrape(p), "read_emit") for p in consumer)
        delivered = [hop_count(scrape(p), "emit_deliver") for p in sio]
        if read_emit > before_c and all(d > b for d, b in zip(delivered, before_s, strict=True)):
            break
        assert time.monotonic() < deadline, (read_emit, delivered)
        await asyncio.sleep(0.2)
    text = "".join(scrape(p) for p in consumer)
    for hop in ("ack_read", "read_emit", "arrive_emit"):
        assert hop_count(text, hop) > 0, f"consumer never observed {hop}"
