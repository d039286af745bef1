"""The engines under the services: PostgreSQL, Redis and Kafka (single node), each
one Server; and the steps that follow them (topics, migrations)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from subprocess import CompletedProcess

from infra.stack.layout import Layout
from infra.stack.packages import kafka_libs, need_binary, pg_bin
from infra.stack.procs import Stack
from infra.stack.server import Log, Server, logged
from infra.stack.util import ROOT, VENV_BIN, die, port_open, say


def infra_servers(lay: Layout) -> list[Server]:
    return [postgres(lay), redis(lay), kafka(lay)]


def postgres(lay: Layout) -> Server:
    as_user = "postgres" if os.geteuid() == 0 else None
    psql = ["-h", "127.0.0.1", "-p", str(lay.pg_port), "-U", "postgres", "-Atq", "-c"]

    def command(stack: Stack) -> list[str]:
        data = pg_data_dir(stack)
        if not (data / "PG_VERSION").exists():
            say("postgres: initdb")
            data.mkdir(parents=True, exist_ok=True)
            if as_user:
                shutil.chown(data, as_user, as_user)
            cmd = [
                pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
            if as_user:
                cmd = ["runuser", "-u", as_user, "--", *cmd]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        sock = data.parent / "pg-socket"
        sock.mkdir(exist_ok=True)
        if as_user:
            shutil.chown(sock, as_user, as_user)
        opts = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(lay.pg_port),
            "-k",
            str(sock),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=256MB",
        ]
        # QUIZ_PG_DURABLE=1: a test stack's PostgreSQL with the durable defaults too (the
        # chaos scenario that SIGKILLs PostgreSQL needs commits that survive it).
        if not lay.durable and os.environ.get("QUIZ_PG_DURABLE") != "1":
            # Test stacks are thrown away: skip fsync for speed (commit semantics unchanged).
            opts += [
                *("-c", "fsync=off", "-c", "synchronous_commit=off"),
                *("-c", "full_page_writes=off"),
            ]
        return [pg_bin("postgres"), "-D", str(data), *opts]

    def ready(_log: Log) -> bool:
        if not port_open(lay.pg_port):
            return False
        return (
            subprocess.run([pg_bin("psql"), *psql, "select 1"], capture_output=True).returncode == 0
        )

    def create_database(_stack: Stack) -> None:
        exists = subprocess.run(
            [pg_bin("psql"), *psql, "select 1 from pg_database where datname='quiz'"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run([pg_bin("psql"), *psql, "create database quiz"], check=True)

    return Server(
        name="postgres",
        group="infra",
        command=command,
        ready=ready,
        ports=(lay.pg_port,),
        where=f"127.0.0.1:{lay.pg_port}",
        user=as_user,
        external="database_url",
        port_var="QUIZ_PG_PORT",
        stop_timeout=30,
        after=create_database,
    )


def pg_data_dir(stack: Stack) -> Path:
    """PostgreSQL refuses to run as root, so its folder must be reachable by user postgres."""
    data = stack.dir / "pg" / "data"
    if os.geteuid() != 0:
        return data
    stack.dir.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(stack.dir)])
    if probe.returncode == 0:
        return data
    # The checkout lives where user postgres cannot look (e.g. under /root): keep the
    # data in /var/tmp and leave a link in the run folder.
    alt = Path("/var/tmp/quizrt") / base64.b32encode(str(stack.dir).encode()).decode()[:40]
    alt.mkdir(parents=True, exist_ok=True)
    shutil.chown(alt, "postgres", "postgres")
    link = stack.dir / "pg"
    if not link.exists():
        link.symlink_to(alt)
    return alt / "data"


def redis(lay: Layout) -> Server:
    def command(stack: Stack) -> list[str]:
        data = stack.dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        return [
            need_binary("redis-server", "redis-server"),
            "--port",
            str(lay.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--daemonize",
            "no",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--appendonly",
            "yes" if lay.durable else "no",
            "--appendfsync",
            "everysec",
        ]

    return Server(
        name="redis",
        group="infra",
        command=command,
        ports=(lay.redis_port,),
        where=f"127.0.0.1:{lay.redis_port}",
        external="redis_url",
        port_var="QUIZ_REDIS_PORT",
        ready_timeout=30,
    )


# The broker's JVM and threads, sized for a 2-core machine by measurement (a spike of
# 3 x 2,000 records in ~35 s, idle between bursts, on the busy bench machine): the
# former G1 with a 512 MB heap, C2 and 2+2 threads used 7.2 % of a core idle and
# 0.60 ms per record; SerialGC, 256 MB, 1+1 threads and a 5 s metadata no-op
# interval 5.9 % and 0.47 ms; the same with only the C1 compiler 3.6 % and 0.32 ms.
# Nearly all of it is the idle cost: one record costs the broker about 0.05 ms.
KAFKA_JVM = [
    "-Xms128m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:CICompilerCount=2",
    "-XX:ActiveProcessorCount=2",
    "-XX:+UseStringDeduplication",
]
KAFKA_THREADS = [
    "num.network.threads=1",
    "num.io.threads=1",
    "background.threads=2",
    "log.cleaner.threads=1",
    "num.replica.fetchers=1",
    "num.recovery.threads.per.data.dir=1",
    # The controller appends a no-op record to the metadata log this often when idle.
    "metadata.max.idle.interval.ms=5000",
]


def kafka_log4j(root_level: str, loggers: dict[str, tuple[str, str]]) -> str:
    """A broker's log4j2.properties: to stdout (its log file), ``root_level`` and
    then ``loggers`` (id -> (logger name, level))."""
    lines = [
        "status = warn",
        "appender.console.type = Console",
        "appender.console.name = STDOUT",
        "appender.console.layout.type = PatternLayout",
        "appender.console.layout.pattern = [%d] %p %m (%c)%n",
        f"rootLogger.level = {root_level}",
        "rootLogger.appenderRef.stdout.ref = STDOUT",
    ]
    for key, (name, level) in loggers.items():
        lines += [f"logger.{key}.name = {name}", f"logger.{key}.level = {level}"]
    return "\n".join([*lines, ""])


KAFKA_LOG4J = kafka_log4j(
    "INFO", {"kafka": ("kafka", "INFO"), "state": ("state.change.logger", "WARN")}
)


def kafka_properties(lay: Layout, kdir: Path) -> str:
    """server.properties of the single KRaft node (broker and controller at once)."""
    listeners = (
        f"PLAINTEXT://127.0.0.1:{lay.kafka_port},CONTROLLER://127.0.0.1:{lay.kafka_ctrl_port}"
    )
    lines = [
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{lay.kafka_ctrl_port}",
        f"listeners={listeners}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{lay.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={kdir / 'data'}",
        "num.partitions=4",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        *KAFKA_THREADS,
        "log.segment.bytes=16777216",
        "log.cleaner.dedupe.buffer.size=8388608",
        "",
    ]
    return "\n".join(lines)


def kafka(lay: Layout) -> Server:
    def command(stack: Stack) -> list[str]:
        java = need_binary("java", "openjdk-17-jre-headless")
        libs = kafka_libs()
        kdir = stack.dir / "kafka"
        kdir.mkdir(parents=True, exist_ok=True)
        props = kdir / "server.properties"
        props.write_text(kafka_properties(lay, kdir))
        (kdir / "log4j2.properties").write_text(KAFKA_LOG4J)
        jvm = [
            java,
            *KAFKA_JVM,
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={kdir}",
            f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
        ]
        if not (kdir / "data" / "meta.properties").exists():
            cluster_id = "-"
            while cluster_id.startswith("-"):  # kafka-storage would read "-..." as an option
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            say("kafka: formatting storage (KRaft, single node)")
            subprocess.run(
                [
                    *jvm,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                    "--standalone",
                    "--ignore-formatted",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        log = stack.log("kafka")
        if log.exists():
            log.rename(stack.logs / "kafka.prev.log")
        return [*jvm, "kafka.Kafka", str(props)]

    return Server(
        name="kafka",
        group="infra",
        command=command,
        ready=logged(b"Kafka Server started"),
        ports=(lay.kafka_port, lay.kafka_ctrl_port),
        where=f"127.0.0.1:{lay.kafka_port}",
        external="kafka_bootstrap",
        port_var="QUIZ_KAFKA_PORT",
        ready_timeout=120,
        stop_timeout=30,
    )


def run_module(
    stack: Stack, module: str, *args: str, capture: bool = False
) -> CompletedProcess[str]:
    """``python -m MODULE ARGS`` of the project with this stack's environment."""
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, **stack.layout.service_env()},
        capture_output=capture,
        text=True,
    )


def create_topics(stack: Stack) -> None:
    if run_module(stack, "services.common.kafka", "create-topics").returncode != 0:
        die("could not create the Kafka topics")


def migrate(stack: Stack) -> None:
    if run_module(stack, "services.common.db", "migrate").returncode != 0:
        die("database migrations failed")
    say("postgres: migrations applied")
