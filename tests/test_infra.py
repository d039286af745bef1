"""The servers are real: PostgreSQL (Piccolo migration + a row), Redis (sorted set),
Kafka (produce, consumer group, committed offsets survive a consumer restart),
nginx (config test, health through the gateway, JSON errors), the Compose file.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from services.common import db
from services.common.kafka import EventProducer, make_consumer
from services.common.redis import get_redis
from services.common.settings import get_settings
from tests.support.early import EarlyJob

pytestmark = pytest.mark.stack


async def test_postgres_migrated_and_row_round_trip() -> None:
    from services.quiz.tables import Quiz

    await db.open_pool()
    try:
        qid = uuid.uuid4()
        await Quiz.insert(
            Quiz(id=qid, owner_id=uuid.uuid4(), title="infra check", public=False, questions=[])
        ).run()
        row = await Quiz.select(Quiz.title).where(Quiz.id == qid).first().run()
        assert row == {"title": "infra check"}
        await Quiz.delete().where(Quiz.id == qid).run()
        async with db.connection() as conn:
            applied = await conn.fetch("select app_name from migration")
        assert {r["app_name"] for r in applied} >= {"iam", "quiz"}
    finally:
        await db.close_pool()


async def test_redis_sorted_set_ranks() -> None:
    r = get_redis()
    key = f"test:{uuid.uuid4().hex}"
    await r.zadd(key, {"a": 10, "b": 30, "c": 20})
    assert await r.zrevrank(key, "b") == 0
    assert await r.zrevrange(key, 0, 1) == [b"b", b"c"]
    await r.delete(key)


async def test_kafka_consumer_group_offsets_survive_restart() -> None:
    s = get_settings()
    group = f"test-{uuid.uuid4().hex[:8]}"
    key = uuid.uuid4().hex
    producer = EventProducer()
    await producer.start()
    try:
        await producer.send_many(s.topic_score_change, [(key, b"first"), (key, b"second")])
    finally:
        await producer.stop()

    async def read_until(want: set[bytes], commit_after: bytes | None) -> list[bytes]:
        consumer = make_consumer(s.topic_score_change, group=group)
        await consumer.start()
        seen: list[bytes] = []
        try:
            async with asyncio.timeout(30):
                while not want <= set(seen):
                    batch = await consumer.getmany(timeout_ms=500)
                    for tp, msgs in batch.items():
                        for m in msgs:
                            if m.key == key.encode():
                                seen.append(m.value)
                                if m.value == commit_after:
                                    await consumer.commit({tp: m.offset + 1})
        finally:
            await consumer.stop()
        return seen

    first = await read_until({b"first"}, commit_after=b"first")
    assert first[0] == b"first"
    # A new consumer in the same group starts after the committed offset.
    second = await read_until({b"second"}, commit_after=None)
    assert second == [b"second"]


def test_nginx_config_is_valid(stack_dir: Path) -> None:
    from infra.stack import nginx_binary

    conf = stack_dir / "nginx" / "nginx.conf"
    r = subprocess.run(
        [nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("service", ["iam", "quiz", "leaderboard"])
def test_health_through_nginx(http: httpx.Client, service: str) -> None:
    r = http.get(f"/api/{service}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["service"] == service and body["status"] == "ok"
    assert set(body["dependencies"].values()) == {"up"}


def test_unknown_api_path_is_json_404(http: httpx.Client) -> None:
    r = http.get("/api/nothing/here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["status_code"] == 404


# Runs beside the rest of the suite (tests/support/early.py).
COMPOSE_CHECK = EarlyJob(
    "compose-spec",
    [
        shutil.which("check-jsonschema") or ".venv/bin/check-jsonschema",
        *("--builtin-schema", "vendor.compose-spec", "infra/compose.yaml"),
    ],
    timeout=280,
)


@pytest.mark.early(COMPOSE_CHECK)
def test_compose_file_matches_compose_spec() -> None:
    r = COMPOSE_CHECK.result()
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_runs_the_socket_tier_as_the_local_stack_does() -> None:
    """The Docker demo's socket.io command is the measured one (uvicorn with the
    pre-framed writes), not another server."""
    import yaml

    from infra.stack.apps import uvicorn

    compose = yaml.safe_load(Path("infra/compose.yaml").read_text())
    local = uvicorn("realtime_sio.app:app", 8000, uds="/run/sio.sock", host="0.0.0.0")
    assert local[-2:] == ["--uds", "/run/sio.sock"]
    local = ["python", *local[1:-2]]  # the image's python; no Unix socket across containers
    assert compose["services"]["sio"]["command"] == local


def test_compose_nginx_config_is_current() -> None:
    """infra/nginx/nginx.compose.conf is generated from the same template (`just compose-nginx`)."""
    from infra.stack import COMPOSE_NGINX, compose_nginx_text

    assert COMPOSE_NGINX.read_text() == compose_nginx_text(), "run `just compose-nginx`"
