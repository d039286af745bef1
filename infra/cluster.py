"""A local Redis Cluster and a three-broker Kafka as plain processes (no Docker).

    python -m infra.cluster up [--dir D]       3 Redis primaries + 1 replica each, 3 KRaft brokers
    python -m infra.cluster down               stop them (by pid)
    python -m infra.cluster env                the QUIZ_* variables that point a stack at them
    python -m infra.cluster status | cpu | kill NAME | restart NAME [--no-wait]
    python -m infra.cluster test [PYTEST ARGS] a cluster on free ports, then ``infra.stack test``
                                               (its own PostgreSQL, services, nginx) on it

``up`` uses fixed ports below the ephemeral range (Redis 27001-27006, Kafka
29192-29194) under ``.run/cluster``;
``eval "$(python -m infra.cluster env)"`` then makes ``./dev up``, ``just bench`` or
``./dev test`` use these servers instead of starting single-node ones (see README,
"Using servers you already have"). Every broker is broker and controller at once
(a three-voter KRaft quorum), from the same pinned jars as the single-node stack,
with a small heap; topics are created with replication factor 3 and
``min.insync.replicas`` 2 (``QUIZ_KAFKA_REPLICATION=3``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.stack import (
    ROOT,
    VENV_BIN,
    die,
    free_port,
    kafka_libs,
    kafka_log4j,
    kill_group,
    need_binary,
    pid_alive,
    port_open,
    reap,
    say,
    wait_for,
)

REDIS_NODES = 6  # 3 primaries, 1 replica each
KAFKA_BROKERS = 3
# How long a primary may be unreachable before its replica takes over (ms). Short,
# so a SIGKILLed primary is replaced in a few seconds.
NODE_TIMEOUT_MS = 2000
# Warnings only, plus the broker's start line (the readiness check waits for it).
LOG4J = kafka_log4j("WARN", {"server": ("kafka.server.KafkaRaftServer", "INFO")})


@dataclass
class Cluster:
    """Ports and pids of one local cluster, saved as ``cluster.json`` in its folder."""

    run_dir: Path
    redis_ports: list[int]
    bus_ports: list[int]  # each Redis node's cluster bus
    kafka_ports: list[int]
    controller_ports: list[int]
    durable: bool = True
    procs: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def dev(cls) -> Cluster:
        return cls(
            run_dir=Path(os.environ.get("QUIZ_CLUSTER_DIR", ROOT / ".run" / "cluster")),
            redis_ports=[27001 + i for i in range(REDIS_NODES)],
            bus_ports=[27101 + i for i in range(REDIS_NODES)],
            kafka_ports=[29192 + i for i in range(KAFKA_BROKERS)],
            controller_ports=[29195 + i for i in range(KAFKA_BROKERS)],
        )

    @classmethod
    def test(cls, run_dir: Path) -> Cluster:
        return cls(
            run_dir=run_dir,
            redis_ports=[free_port() for _ in range(REDIS_NODES)],
            bus_ports=[free_port() for _ in range(REDIS_NODES)],
            kafka_ports=[free_port() for _ in range(KAFKA_BROKERS)],
            controller_ports=[free_port() for _ in range(KAFKA_BROKERS)],
            durable=False,
        )

    @classmethod
    def load(cls, run_dir: Path) -> Cluster | None:
        f = run_dir / "cluster.json"
        if not f.exists():
            return None
        d = json.loads(f.read_text())
        d["run_dir"] = Path(d["run_dir"])
        return cls(**d)

    def save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        tmp = self.run_dir / "cluster.tmp"
        tmp.write_text(json.dumps(d, indent=1))
        tmp.replace(self.run_dir / "cluster.json")

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def redis_url(self) -> str:
        """Every node as a startup node: the client finds the slots from any of them."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.redis_ports) + "/0"

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.kafka_ports)

    def env(self) -> dict[str, str]:
        """What points a stack (``./dev up``, ``./dev test``, ``just bench``) at this cluster."""
        return {
            "QUIZ_REDIS_URL": self.redis_url,
            "QUIZ_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "QUIZ_KAFKA_REPLICATION": str(KAFKA_BROKERS),
        }

    def names(self) -> list[str]:
        return [f"redis-{i}" for i in range(1, REDIS_NODES + 1)] + [
            f"kafka-{i}" for i in range(1, KAFKA_BROKERS + 1)
        ]

    # ------------------------------------------------------------------ processes

    def running(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and pid_alive(p["pid"])

    def spawn(self, name: str, argv: list[str]) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs[name] = {"pid": proc.pid, "argv": argv}
        self.save()
        return proc.pid

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        """Send ``sig`` to the process group of ``name`` and wait until it is gone."""
        p = self.procs.get(name)
        if p and pid_alive(p["pid"]):
            kill_group(p["pid"], sig, timeout)
        reap()

    def stop_all(self) -> None:
        """SIGTERM every broker at once (the last one alone would wait for a
        controller quorum), then the Redis nodes; SIGKILL what is left after 20 s."""
        brokers = [n for n in self.names() if n.startswith("kafka") and self.running(n)]
        for name in brokers:
            say(f"stopping {name} (pid {self.procs[name]['pid']})")
            os.killpg(self.procs[name]["pid"], signal.SIGTERM)
        for name in reversed(self.names()):
            if self.running(name) and name not in brokers:
                say(f"stopping {name} (pid {self.procs[name]['pid']})")
            self.kill(name, signal.SIGTERM, timeout=20)
            self.procs.pop(name, None)
        self.save()

    # ------------------------------------------------------------------ Redis

    def start_redis_node(self, i: int) -> int:
        name = f"redis-{i + 1}"
        port = self.redis_ports[i]
        data = self.run_dir / name
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            need_binary("redis-server", "redis-server"),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.durable else "no",
            "--appendfsync", "everysec",
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(self.bus_ports[i]),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # The other shards keep serving while one fails over.
            "--cluster-require-full-coverage", "no",
            "--cluster-allow-reads-when-down", "no",
        ]  # fmt: skip
        pid = self.spawn(name, argv)
        wait_for(name, lambda: port_open(port), 30, self.logs / f"{name}.log", pid)
        return pid

    def redis_cli(self, port: int, *args: str, check: bool = True) -> str:
        r = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            die(f"redis-cli {' '.join(args)}: {r.stdout}{r.stderr}")
        return r.stdout

    def cluster_ok(self) -> bool:
        """Every running node reports cluster_state:ok and all 16384 slots served."""
        for i, port in enumerate(self.redis_ports):
            if not self.running(f"redis-{i + 1}"):
                continue
            info = self.redis_cli(port, "cluster", "info", check=False)
            if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                return False
        return True

    def start_redis(self) -> None:
        for i in range(REDIS_NODES):
            if not self.running(f"redis-{i + 1}"):
                self.start_redis_node(i)
        first = self.redis_ports[0]
        known = self.redis_cli(first, "cluster", "info")
        if "cluster_known_nodes:1\r" in known or "cluster_known_nodes:1\n" in known:
            say("redis cluster: creating (3 primaries, 1 replica each)")
            self.redis_cli(
                first,
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.redis_ports],
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            )
        wait_for("redis cluster", self.cluster_ok, 60, self.logs / "redis-1.log")
        say(f"redis cluster: ready on {', '.join(map(str, self.redis_ports))}")

    def redis_primaries(self) -> dict[str, int]:
        """name -> port of every node that is a primary now."""
        out = {}
        for i, port in enumerate(self.redis_ports):
            name = f"redis-{i + 1}"
            if self.running(name) and "role:master" in self.redis_cli(
                port, "info", "replication", check=False
            ):
                out[name] = port
        return out

    # ------------------------------------------------------------------ Kafka

    def kafka_props(self, i: int) -> Path:
        kdir = self.run_dir / f"kafka-{i + 1}"
        kdir.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(self.controller_ports))
        rf = KAFKA_BROKERS
        props = kdir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={i + 1}",
                    f"controller.quorum.voters={voters}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.kafka_ports[i]},"
                    f"CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.kafka_ports[i]}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={kdir / 'data'}",
                    "num.partitions=4",
                    f"default.replication.factor={rf}",
                    "min.insync.replicas=2",
                    f"offsets.topic.replication.factor={rf}",
                    "offsets.topic.num.partitions=4",
                    f"transaction.state.log.replication.factor={rf}",
                    "transaction.state.log.min.isr=2",
                    f"share.coordinator.state.topic.replication.factor={rf}",
                    "share.coordinator.state.topic.min.isr=2",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    # A restarted broker takes its leaderships back soon.
                    "leader.imbalance.check.interval.seconds=10",
                    # Followers that stop fetching leave the ISR within a few seconds.
                    "replica.lag.time.max.ms=5000",
                    "broker.session.timeout.ms=6000",
                    "broker.heartbeat.interval.ms=1000",
                    "num.network.threads=1",
                    "num.io.threads=1",
                    "num.replica.fetchers=1",
                    "background.threads=2",
                    "log.segment.bytes=16777216",
                    "log.cleaner.dedupe.buffer.size=4194304",
                    "log.cleaner.threads=1",
                    "",
                ]
            )
        )
        (self.run_dir / "log4j2.properties").write_text(LOG4J)
        return props

    def jvm(self, i: int) -> list[str]:
        kdir = self.run_dir / f"kafka-{i + 1}"
        return [
            need_binary("java", "openjdk-17-jre-headless"),
            "-Xms128m",
            "-Xmx256m",
            "-XX:+UseSerialGC" if not self.durable else "-XX:+UseG1GC",
            "-XX:TieredStopAtLevel=1",
            "-XX:CICompilerCount=1" if not self.durable else "-XX:CICompilerCount=2",
            "-Xss512k",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={kdir}",
            f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.properties'}",
            "-cp",
            f"{kafka_libs()}/*",
        ]

    def start_kafka_broker(self, i: int) -> tuple[str, int, int]:
        """Start broker i (formatting its storage the first time); returns (name, pid,
        log offset) without waiting for it."""
        name = f"kafka-{i + 1}"
        props = self.kafka_props(i)
        meta = self.run_dir / name / "data" / "meta.properties"
        if not meta.exists():
            subprocess.run(
                [
                    *self.jvm(i),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    self.kafka_cluster_id(),
                    "-c",
                    str(props),
                    "--ignore-formatted",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        log = self.logs / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        pid = self.spawn(name, [*self.jvm(i), "kafka.Kafka", str(props)])
        return name, pid, offset

    def kafka_cluster_id(self) -> str:
        f = self.run_dir / "kafka-cluster-id"
        if not f.exists():
            cid = "-"
            while cid.startswith("-"):  # kafka-storage would read "-..." as an option
                cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            f.write_text(cid)
        return f.read_text().strip()

    def wait_kafka(self, started: list[tuple[str, int, int]], timeout: float = 180) -> None:
        for name, pid, offset in started:
            log = self.logs / f"{name}.log"

            def ready(log: Path = log, offset: int = offset) -> bool:
                with open(log, "rb") as f:
                    f.seek(offset)
                    return b"Kafka Server started" in f.read()

            wait_for(name, ready, timeout, log, pid)

    def start_kafka(self) -> None:
        kafka_libs()
        started = [
            self.start_kafka_broker(i)
            for i in range(KAFKA_BROKERS)
            if not self.running(f"kafka-{i + 1}")
        ]
        self.wait_kafka(started)
        say(f"kafka: {KAFKA_BROKERS} brokers ready on {self.kafka_bootstrap}")

    # ------------------------------------------------------------------ commands

    def up(self, wait: bool = True) -> None:
        """Start what is not running. ``wait=False`` returns while the brokers still
        start (the stack's topic creation waits for all three)."""
        self.save()
        self.start_redis()
        if wait:
            self.start_kafka()
        else:
            for i in range(KAFKA_BROKERS):
                if not self.running(f"kafka-{i + 1}"):
                    self.start_kafka_broker(i)

    def restart(self, name: str, wait: bool = True) -> None:
        """Start a node that was killed (it rejoins: a Redis node as a replica of the
        primary that replaced it, a broker catching up its partitions); ``wait=False``
        does not wait for a broker to be ready."""
        self.kill(name, signal.SIGTERM)
        kind, _, n = name.partition("-")
        i = int(n) - 1
        if kind == "redis":
            self.start_redis_node(i)
            wait_for("redis cluster", self.cluster_ok, 60, self.logs / f"{name}.log")
        elif kind == "kafka":
            started = self.start_kafka_broker(i)
            if wait:
                self.wait_kafka([started])
        else:
            die(f"unknown node {name}")


def _test_env(cluster: Cluster) -> dict[str, str]:
    """The environment of the inner ``infra.stack test``: no QUIZ_* of an outer stack
    (a test run inside ``./dev test`` must start its own PostgreSQL and services)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIZ_")}
    for k in ("QUIZ_CHAOS_FULL", "QUIZ_CHAOS_REPORT", "QUIZ_LOG_LEVEL", "QUIZ_KEEP_TEST_RUN"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(cluster.env())
    env["QUIZ_CLUSTER_DIR"] = str(cluster.run_dir)
    return env


def cmd_test(pytest_args: list[str]) -> int:
    """A cluster on free ports, ``infra.stack test`` on it, then the cluster stopped."""
    run_dir = ROOT / ".run" / f"cluster-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    cluster = Cluster.test(run_dir)
    rc = 1
    try:
        cluster.up(wait=False)
        rc = subprocess.run(
            [str(VENV_BIN / "python"), "-m", "infra.stack", "test", *pytest_args],
            cwd=ROOT,
            env=_test_env(cluster),
        ).returncode
        say(f"the stack on the cluster exited with {rc}")
    finally:
        # Reload: the tests restart nodes, so cluster.json names newer pids.
        (Cluster.load(run_dir) or cluster).stop_all()
        if rc == 0 and not os.environ.get("QUIZ_KEEP_TEST_RUN"):
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"cluster logs kept in {run_dir}/logs")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="infra.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "command", choices=["up", "down", "env", "status", "cpu", "kill", "restart", "test"]
    )
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    ap.add_argument("--dir", default=os.environ.get("QUIZ_CLUSTER_DIR"))
    a = ap.parse_args(argv)
    if a.command == "test":
        return cmd_test(a.rest)
    run_dir = Path(a.dir) if a.dir else Cluster.dev().run_dir
    cluster = Cluster.load(run_dir) or Cluster.dev()
    cluster.run_dir = run_dir
    if a.command == "up":
        cluster.up()
        print('point a stack at it:  eval "$(./dev cluster-env)"', flush=True)
        for k, v in cluster.env().items():
            print(f"  {k}={v}")
    elif a.command == "down":
        cluster.stop_all()
    elif a.command == "env":
        for k, v in cluster.env().items():
            print(f"export {k}={v}")
    elif a.command == "status":
        primaries = cluster.redis_primaries()
        for name in cluster.names():
            state = "running" if cluster.running(name) else "down"
            role = " (primary)" if name in primaries else ""
            print(f"  {name:10} {state}{role}")
    elif a.command == "cpu":
        # CPU seconds (user + system) of every node so far, as JSON: run it before and
        # after a bench to get what the engines used (they are not in stack.json).
        import psutil

        cpu = {}
        for name, p in cluster.procs.items():
            if cluster.running(name):
                t = psutil.Process(p["pid"]).cpu_times()
                cpu[name] = round(t.user + t.system, 2)
        print(json.dumps(cpu))
    elif a.command == "kill":
        for name in a.rest:
            cluster.kill(name)
    elif a.command == "restart":
        for name in [n for n in a.rest if n != "--no-wait"]:
            cluster.restart(name, wait="--no-wait" not in a.rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
