"""Every server of a stack, each described once (``Server``: its command, environment,
readiness check, log and ports), in the order ``up`` starts them (``servers``), and
the one way to start them (``start``).

    postgres, redis, kafka              infra (``infra_servers``; a QUIZ_*_URL replaces one)
    iam-N, quiz-N, leaderboard-N,       the services (``service_servers``), started together
    consumer-N, sio-N
    nginx                               the gateway
    redis-commander                     the admin view of Redis (unless QUIZ_ADMIN=0)
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import CompletedProcess

from infra.stack.admin import (
    ADMIN_NAME,
    admin_enabled,
    admin_node_modules,
    admin_url,
    redis_commander_argv,
)
from infra.stack.layout import EXTERNAL_VARS, Layout
from infra.stack.nginx import render_nginx
from infra.stack.packages import kafka_libs, need_binary, nginx_binary, pg_bin
from infra.stack.procs import Stack
from infra.stack.util import ROOT, VENV_BIN, die, http_ok, log_since, port_open, say, wait_for


@dataclass(frozen=True)
class Log:
    """A server's log file and its size when this start began (a restart appends)."""

    path: Path
    offset: int

    def since_start(self) -> bytes:
        return log_since(self.path, self.offset) if self.path.exists() else b""


def is_ready(s: Server, log: Log) -> bool:
    return s.ready(log) if s.ready else port_open(s.ports[0])


@dataclass(frozen=True)
class Server:
    """One server of a stack: all that starting, checking and stopping it needs."""

    name: str  # in stack.json, and its log is logs/NAME.log
    group: str  # infra, service, edge or admin
    # Readies its folders and files, then returns the command line.
    command: Callable[[Stack], list[str]]
    ports: tuple[int, ...] = ()  # what it listens on (refused up front when taken)
    # Whether it serves, given what its log gained since this start (by default: its
    # first port accepts connections).
    ready: Callable[[Log], bool] | None = None
    where: str = ""  # where it serves, for the progress lines
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # run as this user when started as root
    external: str = ""  # the Layout.external key that replaces it (nothing started)
    port_var: str = ""  # the variable that moves its port alone
    ready_timeout: float = 60
    stop_timeout: float = 10  # `down`: SIGKILL after this many seconds
    after: Callable[[Stack], None] | None = None  # once ready, before anything else


def answering(url: str, any_status: bool = True) -> Callable[[Log], bool]:
    """An HTTP answer (with ``any_status``, even an error status: the process serves)."""
    return lambda _log: http_ok(url, expect_any=any_status)


def logged(marker: bytes) -> Callable[[Log], bool]:
    return lambda log: marker in log.since_start()


def start(stack: Stack, servers: Sequence[Server]) -> list[str]:
    """Start those of ``servers`` that neither run already nor are replaced by a
    QUIZ_*_URL server, all at once, then wait until each is ready. Returns the names
    started; exits with the log's tail when one dies or is not ready in time."""
    lay = stack.layout
    started: list[tuple[Server, Log, int]] = []
    for s in servers:
        if s.external in lay.external:
            value = lay.external[s.external].split("@")[-1]  # no credentials
            say(f"{s.name}: using {value} ({EXTERNAL_VARS[s.external]})")
            continue
        if stack.running(s.name):
            if s.group != "service":
                say(f"{s.name}: already running on {s.where}")
            continue
        argv = s.command(stack)
        path = stack.log(s.name)
        log = Log(path, path.stat().st_size if path.exists() else 0)
        pid = stack.spawn(s.name, argv, env=s.env, user=s.user, group=s.group)
        started.append((s, log, pid))
    for s, log, pid in started:
        wait_for(s.name, functools.partial(is_ready, s, log), s.ready_timeout, log.path, pid)
        if s.after:
            s.after(stack)
        if s.group != "service":
            say(f"{s.name}: ready on {s.where}")
    names = [s.name for s, _, _ in started if s.group == "service"]
    if names:
        say(f"services: {', '.join(names)} ready")
    return [s.name for s, _, _ in started]


def servers(lay: Layout) -> list[Server]:
    """Every server of this stack, in the order `up` starts them."""
    table = [*infra_servers(lay), *service_servers(lay), nginx(lay)]
    if admin_enabled() and lay.admin_port:
        table.append(redis_commander(lay))
    return table


def server(lay: Layout, name: str) -> Server | None:
    return next((s for s in servers(lay) if s.name == name), None)


# --------------------------------------------------------------------------- infra


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


# --------------------------------------------------------------------------- services


def granian(app: str, port: int, websockets: bool = False) -> list[str]:
    args = [
        str(VENV_BIN / "granian"),
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--http",
        "1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
        "--backlog",
        "4096",
    ]
    if websockets:
        # backpressure bounds concurrent connections per worker, so sockets need room.
        args += ["--ws", "--backpressure", "20000"]
    else:
        args += ["--no-ws", "--backpressure", "2048"]
    return [*args, app]


def uvicorn(app: str, port: int) -> list[str]:
    """The socket tier on uvicorn: the sans-io websockets implementation, no
    per-message deflate (it compresses once per recipient), uvloop."""
    return [
        str(VENV_BIN / "uvicorn"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "h11",  # httptools is not among the project's packages
        "--ws",
        "websockets-sansio",
        "--ws-per-message-deflate",
        "false",
        "--ws-max-size",
        str(1 << 20),
        "--no-access-log",
        "--log-level",
        "warning",
        "--backlog",
        "4096",
        "--timeout-keep-alive",
        "30",
        app,
    ]


def sio_server(app: str, port: int) -> list[str]:
    """The socket.io process's command: ``QUIZ_SIO_SERVER`` = granian (default) or
    uvicorn (see realtime_sio/README.md for what each costs per socket)."""
    if os.environ.get("QUIZ_SIO_SERVER", "granian") == "uvicorn":
        return uvicorn(app, port)
    return granian(app, port, websockets=True)


# (kind, command, health path) of the HTTP services, in start order.
HTTP_SERVICES: list[tuple[str, Callable[[int], list[str]], str]] = [
    ("iam", lambda p: granian("services.iam.app:app", p), "/api/iam/health"),
    ("quiz", lambda p: granian("services.quiz.app:app", p), "/api/quiz/health"),
    (
        "leaderboard",
        lambda p: granian("services.leaderboard.app:app", p),
        "/api/leaderboard/health",
    ),
]
SIO_HEALTH = "/socket.io/?EIO=4&transport=polling"
CONSUMER = [str(VENV_BIN / "python"), "-m", "services.leaderboard.consumer"]


def service_servers(lay: Layout) -> list[Server]:
    """The service processes: iam, quiz, leaderboard, the Kafka consumers, socket.io."""
    table: list[Server] = []
    for kind, cmd, health in HTTP_SERVICES:
        for i, p in enumerate(lay.ports_of(kind), 1):
            table.append(
                service(lay, f"{kind}-{i}", cmd(p), answering(f"http://127.0.0.1:{p}{health}"), p)
            )
    for i in range(1, lay.consumers + 1):
        # Only what this start wrote counts: a restart appends to the same log.
        table.append(service(lay, f"consumer-{i}", CONSUMER, logged(b"ready")))
    for i, p in enumerate(lay.sio_ports, 1):
        argv = sio_server("realtime_sio.app:app", p)
        table.append(
            service(lay, f"sio-{i}", argv, answering(f"http://127.0.0.1:{p}{SIO_HEALTH}"), p)
        )
    return table


def service(
    lay: Layout, name: str, argv: list[str], ready: Callable[[Log], bool], port: int = 0
) -> Server:
    """One service process: its name and /metrics port in the environment."""
    env = {"QUIZ_PROCESS_NAME": name}
    ports: tuple[int, ...] = (port,) if port else ()
    if name in lay.metrics_ports:
        env["QUIZ_METRICS_PORT"] = str(lay.metrics_ports[name])
        ports += (lay.metrics_ports[name],)
    return Server(
        name=name,
        group="service",
        command=lambda _stack: argv,
        ready=ready,
        ports=ports,
        where=f"127.0.0.1:{port}" if port else "",
        env=env,
    )


# --------------------------------------------------------------------------- edge, admin


def nginx(lay: Layout) -> Server:
    def command(_stack: Stack) -> list[str]:
        conf = render_nginx(lay)
        binary = nginx_binary()
        test = subprocess.run(
            [binary, "-t", "-q", "-p", str(conf.parent), "-c", str(conf)],
            capture_output=True,
            text=True,
        )
        if test.returncode != 0:
            die(f"nginx config invalid:\n{test.stderr}")
        return [binary, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"]

    return Server(
        name="nginx",
        group="edge",
        command=command,
        ports=(lay.http_port,),
        where=lay.base_url,
        port_var="QUIZ_HTTP_PORT",
        ready_timeout=20,
    )


def redis_commander(lay: Layout) -> Server:
    return Server(
        name=ADMIN_NAME,
        group="admin",
        command=lambda _stack: redis_commander_argv(lay),
        ready=answering(admin_url(lay), any_status=False),
        ports=(lay.admin_port,),
        where=admin_url(lay),
        port_var="QUIZ_ADMIN_PORT",
    )


# --------------------------------------------------------------------------- the usual starts


def start_infra(stack: Stack) -> None:
    """PostgreSQL, Redis and Kafka, one after the other, then the topics and the schema."""
    for s in infra_servers(stack.layout):
        start(stack, [s])
    create_topics(stack)
    migrate(stack)


def start_services(stack: Stack, only: str | None = None) -> None:
    """Every service process (or only the one named), all at once."""
    start(stack, [s for s in service_servers(stack.layout) if only is None or s.name == only])


def start_nginx(stack: Stack) -> None:
    start(stack, [nginx(stack.layout)])


def start_redis_commander(stack: Stack) -> str:
    """Start Redis Commander (not with QUIZ_ADMIN=0). Returns why it did not start, or
    ''; a missing npm is reported, not fatal: the stack works without it."""
    lay = stack.layout
    if not admin_enabled() or not lay.admin_port:
        return "QUIZ_ADMIN=0"
    if not stack.running(ADMIN_NAME):
        why = admin_node_modules()
        if why:
            say(f"{ADMIN_NAME}: not started ({why})")
            return why
    start(stack, [redis_commander(lay)])
    return ""


def restart(stack: Stack, name: str) -> None:
    """Stop one server and start it again (fault tests and development)."""
    stack.stop(name)
    if name == ADMIN_NAME:
        start_redis_commander(stack)
        return
    s = server(stack.layout, name)
    if s is not None:
        start(stack, [s])
