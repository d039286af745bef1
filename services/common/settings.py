"""Configuration, read once per process from environment variables prefixed ``QUIZ_``.

Every default works for the ``./dev up`` stack; ``infra/stack/`` exports the
real values (ports, URLs) to every process it starts.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import msgspec

PREFIX = "QUIZ_"
ROOT = Path(__file__).resolve().parents[2]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = "postgresql://postgres@127.0.0.1:55432/quiz"
    redis_url: str = "redis://127.0.0.1:56379/0"
    # A Redis Cluster (also chosen by a ``redis+cluster://`` URL): see services.common.redis.
    redis_cluster: bool = False
    kafka_bootstrap: str = "127.0.0.1:59092"
    # Prefix for Kafka topics, the consumer group and the socket.io channel, so
    # several stacks can share one Kafka/Redis (empty in the normal stack).
    instance: str = ""
    score_change_partitions: int = 4
    # Replication factor of SCORE_CHANGE and TOP_10 (3 on a three-broker cluster;
    # min.insync.replicas is then 2, see services.common.kafka.create_topics).
    kafka_replication: int = 1
    run_dir: str = str(ROOT / ".run" / "dev")
    iam_url: str = "http://127.0.0.1:18101"
    jwt_issuer: str = "quizrt-iam"
    jwt_audience: str = "quizrt"
    access_ttl_s: int = 900
    refresh_ttl_s: int = 14 * 24 * 3600
    # PEM of an Ed25519 private key; empty: a key file under run_dir/keys is used.
    jwt_private_key: str = ""
    # Connections each process opens at start and keeps, each with its hot statements
    # prepared (services/common/db.py): the quiz service's two answer lanes, its outbox
    # relay and a request or two never wait for a new, cold connection.
    db_pool_min: int = 4
    db_pool_max: int = 10
    log_level: str = "INFO"
    sio_max_connections: int = 20000
    sio_events_per_second: int = 20
    # The leaderboard consumer sends each changed session its newest snapshot at most
    # once per tick, sessions independently.
    # 25 ms by measurement (docs/benchmarks.md): against 50 ms, answer -> leaderboard
    # fell by a third in the stadium and many rooms, for the same CPU.
    leaderboard_tick_ms: int = 25
    # An unchanged top 10 is held at most this many ticks (its version and player
    # count ride with the next broadcast): fewer ticks, fresher boards, more deliveries.
    leaderboard_hold_ticks: int = 5
    # Overload guard only: room deliveries per second (a broadcast to a room of N
    # players is N deliveries) past which broadcasts wait their turn (a token bucket
    # holding one second of them; below it no session waits for another; a held,
    # unchanged top 10 waits for room in it, never taking from a changed one).
    # 16,000 by measurement (docs/benchmarks.md): stadium-5000 at the pace it had
    # before the bucket (3.1-3.3 broadcasts a second); 20,000 gave it 4.0 and 30 %
    # more deliveries, and the answers' round trips queued behind them.
    leaderboard_deliveries_per_s: int = 16000
    # The consumer commits its SCORE_CHANGE offsets at most this often (each commit is
    # a write to the broker's offsets log); a crash re-reads at most this much more.
    leaderboard_commit_interval_ms: int = 250
    # TOP_10 records sent within this window go to Kafka as one produce request.
    leaderboard_top10_linger_ms: int = 20
    # Wrong join codes one client address may try per window before a 429 (the quiz
    # service counts them in Redis; nginx limits the request rate on top).
    join_code_misses: int = 60
    join_code_window_s: int = 600
    # Port of this process's Prometheus /metrics on 127.0.0.1 (0 = none); the stack
    # gives every process its own.
    metrics_port: int = 0

    @property
    def topic_score_change(self) -> str:
        return f"{self.instance}SCORE_CHANGE"

    @property
    def topic_top10(self) -> str:
        return f"{self.instance}TOP_10"

    @property
    def consumer_group(self) -> str:
        return f"{self.instance}leaderboard"

    @property
    def sio_channel(self) -> str:
        return f"{self.instance}socketio"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build Settings from ``QUIZ_*`` variables (``QUIZ_DATABASE_URL`` -> database_url)."""
    env = os.environ if environ is None else environ
    raw = {
        name[len(PREFIX) :].lower(): value
        for name, value in env.items()
        if name.startswith(PREFIX) and name[len(PREFIX) :].lower() in Settings.__struct_fields__
    }
    return msgspec.convert(raw, Settings, strict=False)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use."""
    return load_settings()
