"""Process manager for the whole stack as plain local processes (no Docker).

    python -m infra.stack up [--no-demo]     PostgreSQL, Redis, Kafka, services, nginx (idempotent)
    python -m infra.stack down               stop what `up` started, by pid, nothing else
    python -m infra.stack infra-up|infra-down
    python -m infra.stack status | logs [NAME] | env
    python -m infra.stack test [PYTEST ARGS] an isolated stack on free ports, pytest, teardown

Each server gets a folder, a port and a log file under one run folder (``.run/dev``
for ``up``, ``.run/test-*`` for ``test``). A server given by an environment
variable (``QUIZ_DATABASE_URL``, ``QUIZ_REDIS_URL``, ``QUIZ_KAFKA_BOOTSTRAP``) is
used as it is and nothing is started for it.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
KAFKA_VERSION = "4.1.1"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "quizrt"
T0 = time.monotonic()


def say(msg: str) -> None:
    """One progress line with the time since start."""
    # One write per line: servers start and stop from several threads at once.
    sys.stdout.write(f"[{time.monotonic() - T0:6.1f}s] {msg}\n")
    sys.stdout.flush()


def die(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- layout


@dataclass
class Layout:
    """Ports, process counts and folders of one stack."""

    run_dir: Path
    http_port: int
    pg_port: int
    redis_port: int
    kafka_port: int
    kafka_ctrl_port: int
    iam_ports: list[int]
    quiz_ports: list[int]
    leaderboard_ports: list[int]
    sio_ports: list[int]
    consumers: int
    durable: bool = True
    external: dict[str, str] = field(default_factory=dict)
    # Prometheus /metrics port of each service process (by process name).
    metrics_ports: dict[str, int] = field(default_factory=dict)
    # Redis Commander (0: a stack.json written before it existed).
    admin_port: int = 0

    @classmethod
    def dev(cls) -> Layout:
        env = os.environ
        n = {k: int(env.get(f"QUIZ_PROCS_{k.upper()}", d)) for k, d in PROCS_DEFAULT.items()}
        lay = cls(
            run_dir=Path(env.get("QUIZ_RUN_DIR", ROOT / ".run" / "dev")),
            http_port=int(env.get("QUIZ_HTTP_PORT", 8080)),
            pg_port=55432,
            redis_port=56379,
            kafka_port=59092,
            kafka_ctrl_port=59093,
            iam_ports=[18101 + i for i in range(n["iam"])],
            quiz_ports=[18201 + i for i in range(n["quiz"])],
            leaderboard_ports=[18301 + i for i in range(n["leaderboard"])],
            sio_ports=[18401 + i for i in range(n["sio"])],
            consumers=n["consumer"],
            external=external_servers(),
            metrics_ports=_metrics_ports(n, lambda i: 19101 + i),
            admin_port=ADMIN_PORT_DEV,
        )
        return move_dev_ports(lay)

    @classmethod
    def test(cls, run_dir: Path) -> Layout:
        env = os.environ
        n = {k: int(env.get(f"QUIZ_PROCS_{k.upper()}", d)) for k, d in PROCS_TEST.items()}
        return cls(
            run_dir=run_dir,
            http_port=free_port(),
            pg_port=free_port(),
            redis_port=free_port(),
            kafka_port=free_port(),
            kafka_ctrl_port=free_port(),
            iam_ports=[free_port() for _ in range(n["iam"])],
            quiz_ports=[free_port() for _ in range(n["quiz"])],
            leaderboard_ports=[free_port() for _ in range(n["leaderboard"])],
            sio_ports=[free_port() for _ in range(n["sio"])],
            consumers=n["consumer"],
            durable=False,
            external=external_servers(),
            metrics_ports=_metrics_ports(n, lambda _: free_port()),
            admin_port=free_port(),
        )

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["run_dir"] = str(self.run_dir)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Layout:
        # Only the fields this version knows: a stack.json written by another version
        # of this file must still load (to be stopped, pruned or reused).
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["run_dir"] = Path(d["run_dir"])
        return cls(**d)

    @property
    def database_url(self) -> str:
        return self.external.get("database_url") or (
            f"postgresql://postgres@127.0.0.1:{self.pg_port}/quiz"
        )

    @property
    def redis_url(self) -> str:
        return self.external.get("redis_url") or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def kafka_bootstrap(self) -> str:
        return self.external.get("kafka_bootstrap") or f"127.0.0.1:{self.kafka_port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def service_env(self) -> dict[str, str]:
        """The QUIZ_* variables every process of this stack gets."""
        env = {
            "QUIZ_DATABASE_URL": self.database_url,
            "QUIZ_REDIS_URL": self.redis_url,
            "QUIZ_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "QUIZ_RUN_DIR": str(self.run_dir),
            "QUIZ_IAM_URL": f"http://127.0.0.1:{self.iam_ports[0]}",
            "QUIZ_BASE_URL": self.base_url,
        }
        for key in ("QUIZ_INSTANCE", "QUIZ_LOG_LEVEL", "QUIZ_SCORE_CHANGE_PARTITIONS"):
            if key in os.environ:
                env[key] = os.environ[key]
        return env


def _metrics_ports(n: dict[str, int], port: Callable[[int], int]) -> dict[str, int]:
    """One /metrics port per service process: ``port(i)`` for the i-th of them."""
    names = [f"{kind}-{i}" for kind in PROCS_DEFAULT for i in range(1, n[kind] + 1)]
    return {name: port(i) for i, name in enumerate(names)}


PROCS_DEFAULT = {"iam": 1, "quiz": 2, "leaderboard": 1, "sio": 2, "consumer": 1}
PROCS_TEST = {"iam": 1, "quiz": 2, "leaderboard": 1, "sio": 2, "consumer": 1}


def external_servers() -> dict[str, str]:
    keys = {
        "database_url": "QUIZ_DATABASE_URL",
        "redis_url": "QUIZ_REDIS_URL",
        "kafka_bootstrap": "QUIZ_KAFKA_BOOTSTRAP",
    }
    return {k: os.environ[v] for k, v in keys.items() if os.environ.get(v)}


# --------------------------------------------------------------------------- ports

ADMIN_PORT_DEV = 8082
# The dev stack's fixed ports move with QUIZ_PORT_OFFSET (all of them: a second clone
# runs with QUIZ_PORT_OFFSET=10, a third with 20; below 100 the service ranges 18101+,
# 18201+, ... of two stacks never overlap) or one by one with these variables.
PORT_VARS = {
    "http_port": "QUIZ_HTTP_PORT",
    "pg_port": "QUIZ_PG_PORT",
    "redis_port": "QUIZ_REDIS_PORT",
    "kafka_port": "QUIZ_KAFKA_PORT",
    "kafka_ctrl_port": "QUIZ_KAFKA_CONTROLLER_PORT",
    "admin_port": "QUIZ_ADMIN_PORT",
}
PORT_OFFSETS = range(10, 100, 10)
# The variable that moves one server's port (the others move with the offset).
PROCESS_PORT_VAR = {
    "nginx": "QUIZ_HTTP_PORT",
    "postgres": "QUIZ_PG_PORT",
    "redis": "QUIZ_REDIS_PORT",
    "kafka": "QUIZ_KAFKA_PORT",
    "redis-commander": "QUIZ_ADMIN_PORT",
}


def shift_ports(lay: Layout, offset: int) -> None:
    """Add ``offset`` to every port of ``lay`` (each ``*_port``/``*_ports`` field)."""
    for name, value in list(lay.__dict__.items()):
        if name.endswith("_port") and isinstance(value, int) and value:
            setattr(lay, name, value + offset)
        elif name.endswith("_ports") and isinstance(value, list):
            setattr(lay, name, [p + offset for p in value])
        elif name.endswith("_ports") and isinstance(value, dict):
            setattr(lay, name, {k: p + offset for k, p in value.items()})


def move_dev_ports(lay: Layout, env: dict[str, str] | None = None) -> Layout:
    """Apply QUIZ_PORT_OFFSET, then the per-server port variables (absolute ports)."""
    env = dict(os.environ if env is None else env)
    shift_ports(lay, int(env.get("QUIZ_PORT_OFFSET") or 0))
    for attr, var in PORT_VARS.items():
        if env.get(var):
            setattr(lay, attr, int(env[var]))
    if env.get("QUIZ_KAFKA_PORT") and not env.get("QUIZ_KAFKA_CONTROLLER_PORT"):
        lay.kafka_ctrl_port = lay.kafka_port + 1
    return lay


def planned_ports(stack: Stack) -> list[tuple[int, str]]:
    """(port, process) of every listener that `up` would start now: what this stack
    already runs and the servers given by QUIZ_*_URL are left out."""
    lay = stack.layout
    want = [(lay.http_port, "nginx")]
    if "database_url" not in lay.external:
        want.append((lay.pg_port, "postgres"))
    if "redis_url" not in lay.external:
        want.append((lay.redis_port, "redis"))
    if "kafka_bootstrap" not in lay.external:
        want += [(lay.kafka_port, "kafka"), (lay.kafka_ctrl_port, "kafka")]
    for kind in ("iam", "quiz", "leaderboard", "sio"):
        want += [(p, f"{kind}-{i}") for i, p in enumerate(getattr(lay, f"{kind}_ports"), 1)]
    want += [(p, name) for name, p in lay.metrics_ports.items()]
    if admin_enabled() and lay.admin_port:
        want.append((lay.admin_port, ADMIN_NAME))
    return [(p, n) for p, n in want if not stack.running(n)]


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not listen on ``host:port`` (the way the servers bind)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_holder(port: int) -> str:
    """Who holds TCP ``port``, e.g. ``java (pid 4953, in /work/other-clone)``, from
    /proc/net/tcp{,6} and the processes' open sockets (the same facts as ``ss -ltnp``)."""
    listening: set[str] = set()
    bound: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] != "0":
                (listening if f[3] == "0A" else bound).add(f"socket:[{f[9]}]")
    sockets = listening or bound
    if not sockets:
        return "an unknown process"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in sockets:
                    return describe_process(int(proc.name))
            except OSError:
                continue
    return "a process of another user (`sudo ss -ltnp` names it)"


def describe_process(pid: int) -> str:
    """``name (pid N, in CWD)``: the folder tells which checkout a stack runs from."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        name = "?"
    try:
        return f"{name} (pid {pid}, in {os.readlink(f'/proc/{pid}/cwd')})"
    except OSError:
        return f"{name} (pid {pid})"


def check_ports(stack: Stack) -> None:
    """Refuse to start anything, in one line, when a port of this stack is taken."""
    planned = planned_ports(stack)
    taken = [(p, n) for p, n in planned if port_taken(p)]
    if not taken:
        return
    lay = stack.layout

    def label(port: int, name: str) -> str:
        return "kafka controller" if name == "kafka" and port == lay.kafka_ctrl_port else name

    shown = taken[:3]  # a whole other stack holds a dozen: the first few tell enough
    what = "; ".join(f"port {p} ({label(p, n)}) is taken by {port_holder(p)}" for p, n in shown)
    if len(taken) > len(shown):
        what += f"; and {len(taken) - len(shown)} more ports of this stack (`ss -ltnp` lists them)"
    cur = int(os.environ.get("QUIZ_PORT_OFFSET") or 0)
    free = next((o for o in PORT_OFFSETS if not any(port_taken(p + o) for p, _ in planned)), None)
    if free is None:
        move = "QUIZ_PORT_OFFSET=10, 20, ... (moves every port)"
    else:
        move = f"QUIZ_PORT_OFFSET={cur + free} (moves every port; all free now)"
    one = sorted({PROCESS_PORT_VAR.get(n, "") for _, n in taken})
    if "" not in one and len(one) <= 2:  # one or two servers in the way: moving them is enough
        move += f" or {', '.join(v + '=PORT' for v in one)}"
    die(
        f"{what}; nothing was started. Move this stack with {move}, or stop the other"
        " stack (`./dev down` in its checkout)."
    )


# --------------------------------------------------------------------------- state


# Servers start and stop from several threads at once (cmd_infra_up, cmd_down).
STATE_LOCK = threading.RLock()


class Stack:
    """A run folder with its state file: which processes run under which pid."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.dir = layout.run_dir
        self.logs = self.dir / "logs"
        self.state_file = self.dir / "stack.json"
        self.procs: dict[str, dict] = {}
        if self.state_file.exists():
            self.procs = json.loads(self.state_file.read_text()).get("procs", {})

    @classmethod
    def load(cls, run_dir: Path) -> Stack | None:
        f = run_dir / "stack.json"
        if not f.exists():
            return None
        return cls(Layout.from_json(json.loads(f.read_text())["layout"]))

    def save(self) -> None:
        with STATE_LOCK:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            state = {"layout": self.layout.to_json(), "procs": self.procs}
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(self.state_file)

    def running(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and pid_alive(p["pid"])

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        user: str | None = None,
        group: str = "service",
    ) -> int:
        """Start one process in its own process group, output to logs/NAME.log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        full_env = {**os.environ, **self.layout.service_env(), **(env or {})}
        full_env["PYTHONUNBUFFERED"] = "1"
        if user and os.geteuid() == 0:
            argv = ["runuser", "-u", user, "--", *argv]
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        with STATE_LOCK:
            self.procs[name] = {"pid": proc.pid, "argv": argv, "group": group}
            self.save()
        return proc.pid

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        p = self.procs.get(name)
        if not p:
            return
        pid = p["pid"]
        if pid_alive(pid):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                reap()
                time.sleep(0.05)
            if pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                time.sleep(0.1)
        reap()
        with STATE_LOCK:
            self.procs.pop(name, None)
            self.save()


def at_once(*steps: Callable[[], object]) -> None:
    """Run the steps in threads at once; the first failure (a ``die`` too) is raised."""
    with ThreadPoolExecutor(len(steps)) as pool:
        for f in [pool.submit(step) for step in steps]:
            f.result()


def reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def wait_for(what: str, check, timeout: float, log: Path | None = None, pid: int | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        if pid is not None and not pid_alive(pid):
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            die(f"{what} exited during start-up; last log lines:\n{tail}")
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    die(f"{what} not ready after {timeout:.0f}s; last log lines:\n{tail}")


def http_ok(url: str, expect_any: bool = False) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status < 500 or expect_any
    except urllib.error.HTTPError as e:
        return expect_any or e.code < 500
    except OSError:
        return False


# --------------------------------------------------------------------------- packages


def need_binary(binary: str, package: str, candidates: list[str] | None = None) -> str:
    """Path of a server binary; installs its Debian package as root when missing."""
    for c in [*(candidates or []), binary]:
        path = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK) else None)
        if path:
            return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {package} with apt-get (first run only)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL
        )
        r = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        if r.returncode == 0:
            return need_binary(binary, package, candidates)
    die(f"{binary} not found: install it with `sudo apt-get install {package}`")
    raise AssertionError


def pg_bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    cands = [str(v / name) for v in versions]
    if not cands:
        need_binary("pg_ctl", "postgresql", [])
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        cands = [str(v / name) for v in versions]
    return need_binary(name, "postgresql", cands)


def kafka_libs() -> Path:
    """The broker's jars, copied once from Maven Central into the user cache."""
    libs = CACHE / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / ".complete").exists():
        return libs
    if not shutil.which("mvn"):
        die("Maven (mvn) is needed once to fetch Apache Kafka: `sudo apt-get install maven`")
    say(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} (first run only)")
    r = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(ROOT / "infra/kafka/pom.xml"),
            "package",
            f"-Dkafka.version={KAFKA_VERSION}",
            f"-Dlibs.dir={libs}",
        ],
        cwd=ROOT,
    )
    if r.returncode != 0:
        die("mvn could not fetch the Kafka broker")
    (libs / ".complete").touch()
    return libs


# --------------------------------------------------------------------------- servers


def start_postgres(stack: Stack) -> None:
    lay = stack.layout
    if "database_url" in lay.external:
        say(f"postgres: using {lay.external['database_url'].split('@')[-1]} (QUIZ_DATABASE_URL)")
        return
    if stack.running("postgres"):
        say(f"postgres: already running on {lay.pg_port}")
        return
    data = pg_data_dir(stack)
    as_user = "postgres" if os.geteuid() == 0 else None
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
        opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    pid = stack.spawn(
        "postgres", [pg_bin("postgres"), "-D", str(data), *opts], user=as_user, group="infra"
    )
    wait_for("postgres", lambda: port_open(lay.pg_port), 60, stack.logs / "postgres.log", pid)
    psql = [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(lay.pg_port), "-U", "postgres", "-Atq"]
    for _ in range(100):
        r = subprocess.run([*psql, "-c", "select 1"], capture_output=True)
        if r.returncode == 0:
            break
        time.sleep(0.1)
    exists = subprocess.run(
        [*psql, "-c", "select 1 from pg_database where datname='quiz'"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run([*psql, "-c", "create database quiz"], check=True)
    say(f"postgres: ready on 127.0.0.1:{lay.pg_port}")


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


def start_redis(stack: Stack) -> None:
    lay = stack.layout
    if "redis_url" in lay.external:
        say("redis: using QUIZ_REDIS_URL")
        return
    if stack.running("redis"):
        say(f"redis: already running on {lay.redis_port}")
        return
    data = stack.dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    binary = need_binary("redis-server", "redis-server")
    args = [
        binary,
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
    pid = stack.spawn("redis", args, group="infra")
    wait_for("redis", lambda: port_open(lay.redis_port), 30, stack.logs / "redis.log", pid)
    say(f"redis: ready on 127.0.0.1:{lay.redis_port}")


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


def start_kafka(stack: Stack) -> None:
    lay = stack.layout
    if "kafka_bootstrap" in lay.external:
        say(f"kafka: using {lay.external['kafka_bootstrap']} (QUIZ_KAFKA_BOOTSTRAP)")
        return
    if stack.running("kafka"):
        say(f"kafka: already running on {lay.kafka_port}")
        return
    java = need_binary("java", "openjdk-17-jre-headless")
    libs = kafka_libs()
    kdir = stack.dir / "kafka"
    kdir.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{lay.kafka_ctrl_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{lay.kafka_port},CONTROLLER://127.0.0.1:{lay.kafka_ctrl_port}",
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
        )
    )
    (kdir / "log4j2.properties").write_text(
        "\n".join(
            [
                "status = warn",
                "appender.console.type = Console",
                "appender.console.name = STDOUT",
                "appender.console.layout.type = PatternLayout",
                "appender.console.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.stdout.ref = STDOUT",
                "logger.kafka.name = kafka",
                "logger.kafka.level = INFO",
                "logger.state.name = state.change.logger",
                "logger.state.level = WARN",
                "",
            ]
        )
    )
    cp = f"{libs}/*"
    jvm = [
        java,
        *KAFKA_JVM,
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={kdir}",
        f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
        "-cp",
        cp,
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
    log = stack.logs / "kafka.log"
    if log.exists():
        log.rename(stack.logs / "kafka.prev.log")
    pid = stack.spawn("kafka", [*jvm, "kafka.Kafka", str(props)], group="infra")
    wait_for(
        "kafka", lambda: "Kafka Server started" in log.read_text(errors="replace"), 120, log, pid
    )
    say(f"kafka: ready on 127.0.0.1:{lay.kafka_port}")


def create_topics(stack: Stack) -> None:
    r = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "services.common.kafka", "create-topics"],
        cwd=ROOT,
        env={**os.environ, **stack.layout.service_env()},
    )
    if r.returncode != 0:
        die("could not create the Kafka topics")


def migrate(stack: Stack) -> None:
    r = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "services.common.db", "migrate"],
        cwd=ROOT,
        env={**os.environ, **stack.layout.service_env()},
    )
    if r.returncode != 0:
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


def service_specs(lay: Layout) -> list[tuple[str, list[str], str | None]]:
    """(name, argv, health URL) of every service process."""
    specs: list[tuple[str, list[str], str | None]] = []
    for i, p in enumerate(lay.iam_ports, 1):
        specs.append(
            (f"iam-{i}", granian("services.iam.app:app", p), f"http://127.0.0.1:{p}/api/iam/health")
        )
    for i, p in enumerate(lay.quiz_ports, 1):
        specs.append(
            (
                f"quiz-{i}",
                granian("services.quiz.app:app", p),
                f"http://127.0.0.1:{p}/api/quiz/health",
            )
        )
    for i, p in enumerate(lay.leaderboard_ports, 1):
        specs.append(
            (
                f"leaderboard-{i}",
                granian("services.leaderboard.app:app", p),
                f"http://127.0.0.1:{p}/api/leaderboard/health",
            )
        )
    for i in range(1, lay.consumers + 1):
        specs.append(
            (
                f"consumer-{i}",
                [str(VENV_BIN / "python"), "-m", "services.leaderboard.consumer"],
                None,
            )
        )
    for i, p in enumerate(lay.sio_ports, 1):
        specs.append(
            (
                f"sio-{i}",
                sio_server("realtime_sio.app:app", p),
                f"http://127.0.0.1:{p}/socket.io/?EIO=4&transport=polling",
            )
        )
    return specs


def log_since(path: Path, offset: int) -> bytes:
    """What a log file gained after ``offset`` bytes."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read()


def start_services(stack: Stack, only: str | None = None) -> None:
    specs = [s for s in service_specs(stack.layout) if only is None or s[0] == only]
    started = []
    offsets: dict[str, int] = {}
    for name, argv, health in specs:
        if stack.running(name):
            continue
        log = stack.logs / f"{name}.log"
        offsets[name] = log.stat().st_size if log.exists() else 0
        env = {"QUIZ_PROCESS_NAME": name}
        if name in stack.layout.metrics_ports:
            env["QUIZ_METRICS_PORT"] = str(stack.layout.metrics_ports[name])
        pid = stack.spawn(name, argv, env=env)
        started.append((name, health, pid))
    for name, health, pid in started:
        if health:
            wait_for(
                name,
                lambda h=health: http_ok(h, expect_any=True),
                60,
                stack.logs / f"{name}.log",
                pid,
            )
        else:
            wait_for(
                name,
                # Only what this start wrote: a restart appends to the same log.
                lambda n=name: b"ready" in log_since(stack.logs / f"{n}.log", offsets[n]),
                60,
                stack.logs / f"{name}.log",
                pid,
            )
    if started:
        say(f"services: {', '.join(n for n, _, _ in started)} ready")


# Per client address: (rate, burst). A classroom behind one NAT address must fit.
RATE_LIMITS = {
    "LOGIN": ("5r/s", 20),
    "GUESTS": ("50r/s", 200),
    "JOIN": ("5r/s", 200),  # join codes: a whole class joins at once, guessing is slow
    "ANSWERS": ("300r/s", 600),
    "API": ("500r/s", 1000),
}


def nginx_text(values: dict[str, str]) -> str:
    """infra/nginx/nginx.conf.template with its {{NAME}} placeholders filled in."""
    values = dict(values)
    for name, (rate, burst) in RATE_LIMITS.items():
        env = os.environ.get(f"QUIZ_RATE_{name}", "")
        if env:  # e.g. QUIZ_RATE_ANSWERS=5000r/s:10000
            rate, _, b = env.partition(":")
            burst = int(b or burst)
        values.setdefault(f"RATE_{name}", rate)
        values.setdefault(f"BURST_{name}", str(burst))
    text = (ROOT / "infra/nginx/nginx.conf.template").read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    return text


def _pool(servers: list[str]) -> str:
    return "\n".join(f"        server {s} max_fails=1 fail_timeout=2s;" for s in servers)


def render_nginx(lay: Layout) -> Path:
    """Write the nginx config of this layout into the run folder."""
    ndir = lay.run_dir / "nginx"
    for sub in ("", "cache", "tmp"):
        (ndir / sub).mkdir(parents=True, exist_ok=True)

    def pool(ports: list[int]) -> str:
        return _pool([f"127.0.0.1:{p}" for p in ports])

    conf = ndir / "nginx.conf"
    conf.write_text(
        nginx_text(
            {
                "USER": "user root;" if os.geteuid() == 0 else "",
                "PREFIX": str(ndir),
                "LOGS": str(lay.run_dir / "logs"),
                "HTTP_PORT": str(lay.http_port),
                "LISTEN_HOST": "127.0.0.1:",
                "IAM_SERVERS": pool(lay.iam_ports),
                "QUIZ_SERVERS": pool(lay.quiz_ports),
                "LEADERBOARD_SERVERS": pool(lay.leaderboard_ports),
                "SIO_SERVERS": pool(lay.sio_ports),
                "WEB_ROOT": str(ROOT / "web" / "dist"),
                "DOCS_ROOT": str(ROOT / "docs"),
                "NGINX_ROOT": str(ROOT / "infra" / "nginx"),
            }
        )
    )
    return conf


COMPOSE_NGINX = ROOT / "infra" / "nginx" / "nginx.compose.conf"


def compose_nginx_text() -> str:
    """The same gateway for infra/compose.yaml: pools name Compose services, which
    resolve to every replica of a `--scale`d service."""
    defaults = {f"RATE_{n}": r for n, (r, _) in RATE_LIMITS.items()}
    defaults |= {f"BURST_{n}": str(b) for n, (_, b) in RATE_LIMITS.items()}
    return nginx_text(
        {
            **defaults,
            "USER": "",
            "PREFIX": "/var/cache/nginx",
            "LOGS": "/var/log/nginx",
            "HTTP_PORT": "8080",
            "LISTEN_HOST": "",
            "IAM_SERVERS": _pool(["iam:8000"]),
            "QUIZ_SERVERS": _pool(["quiz:8000"]),
            "LEADERBOARD_SERVERS": _pool(["leaderboard:8000"]),
            "SIO_SERVERS": _pool(["sio:8000"]),
            "WEB_ROOT": "/srv/web",
            "DOCS_ROOT": "/srv/docs",
            "NGINX_ROOT": "/etc/nginx/quizrt",
        }
    )


def nginx_binary() -> str:
    return need_binary("nginx", "nginx-light", ["/usr/sbin/nginx"])


def start_nginx(stack: Stack) -> None:
    lay = stack.layout
    if stack.running("nginx"):
        say(f"nginx: already running on {lay.http_port}")
        return
    conf = render_nginx(lay)
    binary = nginx_binary()
    test = subprocess.run(
        [binary, "-t", "-q", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    if test.returncode != 0:
        die(f"nginx config invalid:\n{test.stderr}")
    pid = stack.spawn(
        "nginx",
        [binary, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
        group="edge",
    )
    wait_for("nginx", lambda: port_open(lay.http_port), 20, stack.logs / "nginx.log", pid)
    say(f"nginx: ready on {lay.base_url}")


# --------------------------------------------------------------------------- admin tools

ADMIN_NAME = "redis-commander"
ADMIN_DIR = ROOT / "infra" / "admin"
REDIS_COMMANDER = ADMIN_DIR / "node_modules" / "redis-commander" / "bin" / "redis-commander.js"


def admin_enabled() -> bool:
    """Redis Commander runs with the stack unless QUIZ_ADMIN=0."""
    return os.environ.get("QUIZ_ADMIN", "1").strip().lower() not in ("0", "no", "false", "off")


def admin_node_modules() -> str:
    """Install infra/admin's npm packages from its lock file (`npm ci`) when missing or
    when the lock changed; returns why it could not, or ''. Serialised with a file lock,
    since several test stacks may start at once."""
    import fcntl

    lock_sum = str(hash_file(ADMIN_DIR / "package-lock.json"))
    stamp = ADMIN_DIR / "node_modules" / ".quizrt-lock"
    with open(ADMIN_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if REDIS_COMMANDER.exists() and stamp.exists() and stamp.read_text() == lock_sum:
            return ""
        npm = shutil.which("npm")
        if not npm:
            return "npm is missing (Debian: apt-get install -y nodejs npm)"
        say("redis-commander: npm ci in infra/admin (first run only)")
        r = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=ADMIN_DIR,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if r.returncode != 0:
            return f"npm ci failed: {r.stderr[-800:]}"
        stamp.write_text(lock_sum)
    return ""


def hash_file(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def redis_commander_argv(lay: Layout) -> list[str]:
    """Redis Commander on 127.0.0.1:admin_port against the stack's Redis."""
    from urllib.parse import unquote, urlsplit

    url = urlsplit(lay.redis_url)
    argv = [
        shutil.which("node") or "node",
        str(REDIS_COMMANDER),
        "--redis-host",
        url.hostname or "127.0.0.1",
        "--redis-port",
        str(url.port or 6379),
        "--redis-db",
        (url.path or "/0").strip("/") or "0",
        "--redis-label",
        "quizrt",
        "--address",
        "127.0.0.1",
        "--port",
        str(lay.admin_port),
        # Nothing written to or read from a config file: the command line is all.
        "--nosave",
        "--noload",
    ]
    if url.username:
        argv += ["--redis-username", unquote(url.username)]
    if url.password:
        argv += ["--redis-password", unquote(url.password)]
    if url.scheme == "rediss":
        argv.append("--redis-tls")
    return argv


def start_redis_commander(stack: Stack) -> str:
    """Start Redis Commander (not with QUIZ_ADMIN=0). Returns why it did not start, or
    ''; a missing npm is reported, not fatal: the stack works without it."""
    lay = stack.layout
    if not admin_enabled() or not lay.admin_port:
        return "QUIZ_ADMIN=0"
    if stack.running(ADMIN_NAME):
        say(f"{ADMIN_NAME}: already running on {admin_url(lay)}")
        return ""
    why = admin_node_modules()
    if why:
        say(f"{ADMIN_NAME}: not started ({why})")
        return why
    pid = stack.spawn(ADMIN_NAME, redis_commander_argv(lay), group="admin")
    log = stack.logs / f"{ADMIN_NAME}.log"
    wait_for(ADMIN_NAME, lambda: http_ok(admin_url(lay)), 60, log, pid)
    say(f"{ADMIN_NAME}: ready on {admin_url(lay)}")
    return ""


def admin_url(lay: Layout) -> str:
    return f"http://127.0.0.1:{lay.admin_port}/"


def kaskade_argv(lay: Layout, args: list[str]) -> list[str]:
    """kaskade (a terminal UI for Kafka) on the stack's broker: admin mode (topics,
    partitions, consumer groups, lag) or, given a topic, its messages from the start."""
    exe = str(VENV_BIN / "kaskade")
    if args and not args[0].startswith("-"):
        topic, rest = args[0], args[1:]
        return [
            exe,
            "consumer",
            "-b",
            lay.kafka_bootstrap,
            "-t",
            topic,
            "--earliest",
            "-k",
            "string",
            "-v",
            "json",
            *rest,
        ]
    return [exe, "admin", "-b", lay.kafka_bootstrap, *args]


def cmd_kafka_ui(stack: Stack, args: list[str]) -> None:
    lay = stack.layout
    argv = kaskade_argv(lay, args)
    if not Path(argv[0]).exists():
        die("kaskade is not in .venv: `./dev --list` installs it (uv sync, dev group)")
    if "kafka_bootstrap" not in lay.external and not port_open(lay.kafka_port):
        die(f"no Kafka on {lay.kafka_bootstrap}: start the stack first (`./dev up`)")
    os.execv(argv[0], argv)


def seed_demo(stack: Stack) -> dict:
    r = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "services.quiz.demo"],
        cwd=ROOT,
        env={**os.environ, **stack.layout.service_env()},
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        say(f"demo quiz: could not be loaded:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return {}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {}


def build_web() -> None:
    r = subprocess.run(["sh", str(ROOT / "web" / "build.sh")], cwd=ROOT)
    if r.returncode != 0:
        say("web client: build failed (the API still works)")


# --------------------------------------------------------------------------- commands


def cmd_infra_up(stack: Stack) -> None:
    """PostgreSQL, Redis and Kafka start at once; the schema is migrated as soon as
    PostgreSQL is ready, the topics are made as soon as Kafka is."""
    stack.save()

    def postgres() -> None:
        start_postgres(stack)
        migrate(stack)

    def kafka() -> None:
        start_kafka(stack)
        create_topics(stack)

    at_once(postgres, lambda: start_redis(stack), kafka)


def cmd_up(stack: Stack, demo: bool = True, web: bool = True) -> None:
    already = all(stack.running(n) for n, _, _ in service_specs(stack.layout)) and stack.running(
        "nginx"
    )
    if already:
        say(f"the stack is already running ({stack.dir}); `./dev down` stops it")
    check_ports(stack)
    if web and (ROOT / "web" / "build.sh").exists():
        build_web()
    cmd_infra_up(stack)
    start_services(stack)
    start_nginx(stack)
    start_redis_commander(stack)
    info = seed_demo(stack) if demo else {}
    summary(stack, info)


def summary(stack: Stack, info: dict) -> None:
    lay = stack.layout
    base = lay.base_url
    lines = [
        "",
        "quizrt is up",
        f"  web client        {base}/",
        f"  API docs          {base}/docs/  (OpenAPI: /api/iam/schema, /api/quiz/schema,"
        " /api/leaderboard/schema)",
        f"  health            {base}/api/quiz/health",
        f"  socket.io         {base}/socket.io/",
        f"  PostgreSQL        {lay.database_url}",
        f"  Redis             {lay.redis_url}",
        f"  Kafka             {lay.kafka_bootstrap}",
        f"  logs              {stack.logs}/  (`just logs NAME`)",
        *admin_summary(stack),
    ]
    if info.get("code"):
        lines += [
            f'  demo quiz         "{info.get("title")}": join code {info["code"]}',
            f"  play it           {base}/join/{info['code']}",
            f"  host it           {base}/host?session={info.get('session_id')}"
            f"&code={info['code']}&quiz={info.get('quiz_id')}"
            f"  (sign in: {info.get('host_username')} / {info.get('host_password')})",
        ]
    lines.append("  stop              ./dev down")
    print("\n".join(lines), flush=True)


def admin_summary(stack: Stack) -> list[str]:
    """The summary's lines about the admin views."""
    lay = stack.layout
    if stack.running(ADMIN_NAME):
        rc = f"  Redis Commander   {admin_url(lay)}"
    elif not admin_enabled():
        rc = "  Redis Commander   off (QUIZ_ADMIN=0)"
    else:
        rc = "  Redis Commander   not running (why: the lines above)"
    return [
        rc,
        f"  Kafka UI          `just kafka-ui` (kaskade on {lay.kafka_bootstrap}; "
        "`just kafka-ui SCORE_CHANGE`: its messages)",
        "  admin views       `just kafka-topics`, `just redis-cli`",
    ]


def load_stack(run_dir: Path, fresh_ports: bool = False) -> Stack:
    """The stack of a run folder. With ``fresh_ports`` and nothing of it running, its
    ports come from the environment again (QUIZ_PORT_OFFSET, QUIZ_HTTP_PORT, ...), so
    moving a stopped stack takes effect on the next `up`; data folders stay."""
    stack = Stack.load(run_dir)
    if stack is not None and not (fresh_ports and not any(map(stack.running, stack.procs))):
        return stack
    lay = Layout.dev()
    lay.run_dir = run_dir
    return Stack(lay)


def cmd_down(stack: Stack) -> None:
    order = [
        "nginx",
        ADMIN_NAME,
        *[n for n, _, _ in reversed(service_specs(stack.layout))],
        "kafka",
        "redis",
        "postgres",
    ]
    names = [n for n in order if n in stack.procs] + [n for n in stack.procs if n not in order]
    infra = ("kafka", "redis", "postgres")

    def stop(name: str) -> None:
        if stack.running(name):
            say(f"stopping {name} (pid {stack.procs[name]['pid']})")
        stack.stop(name, timeout=30 if name in ("kafka", "postgres") else 10)

    # Two waves, each at once: nginx and every service, then what they use.
    for wave in ([n for n in names if n not in infra], [n for n in names if n in infra]):
        if wave:
            at_once(*[functools.partial(stop, n) for n in wave])
    say("stopped")


def cmd_status(stack: Stack) -> int:
    bad = 0
    for name, p in stack.procs.items():
        alive = pid_alive(p["pid"])
        bad += not alive
        print(f"  {name:16} pid {p['pid']:>7}  {'running' if alive else 'DEAD'}")
    if not stack.procs:
        print("  nothing running")
    return 1 if bad else 0


def cmd_test(pytest_args: list[str]) -> int:
    run_dir = ROOT / ".run" / f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    lay = Layout.test(run_dir)
    stack = Stack(lay)
    say(f"test stack in {run_dir} (nginx on {lay.http_port})")
    prune_test_runs()
    rc = 1
    try:
        web = build_web if (ROOT / "web" / "build.sh").exists() else lambda: None
        at_once(web, lambda: cmd_infra_up(stack))  # nginx serves the build: both before it
        start_services(stack)
        start_nginx(stack)
        env = {**os.environ, **lay.service_env(), "QUIZ_STACK_DIR": str(run_dir)}
        say("running pytest")
        rc = subprocess.run([str(VENV_BIN / "pytest"), *pytest_args], cwd=ROOT, env=env).returncode
    finally:
        # Reload: tests may have restarted processes (fault tests), so the pids
        # in stack.json are newer than the ones this process remembers.
        cmd_down(Stack.load(run_dir) or stack)
        if rc == 0 and not os.environ.get("QUIZ_KEEP_TEST_RUN"):
            remove_run_dir(run_dir)
        else:
            say(f"logs kept in {run_dir}/logs")
    return rc


def remove_run_dir(run_dir: Path) -> None:
    pg = run_dir / "pg"
    if pg.is_symlink():  # data kept outside the checkout (see pg_data_dir)
        shutil.rmtree(pg.resolve(), ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)


def prune_test_runs(keep: int = 3) -> None:
    """Delete the folders of finished test runs, keeping the newest few for their logs."""
    dead = []
    for d in (ROOT / ".run").glob("test-*"):
        stack = Stack.load(d)
        if stack is None or not any(pid_alive(p["pid"]) for p in stack.procs.values()):
            dead.append(d)
    dead.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for d in dead[keep:]:
        remove_run_dir(d)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="infra.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "command",
        choices=[
            "up",
            "down",
            "infra-up",
            "infra-down",
            "status",
            "logs",
            "env",
            "test",
            "restart",
            "kill",
            "nginx-test",
            "compose-nginx",
            "kafka-ui",
        ],
    )
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument(
        "--dir",
        default=os.environ.get("QUIZ_STACK_DIR"),
        help="run folder of the stack (default .run/dev)",
    )
    a = ap.parse_args(argv)
    if a.command == "test":
        return cmd_test(a.rest)
    run_dir = Path(a.dir) if a.dir else Path(os.environ.get("QUIZ_RUN_DIR", ROOT / ".run/dev"))
    stack = load_stack(run_dir, fresh_ports=a.command in ("up", "infra-up"))
    if a.command == "kafka-ui":
        cmd_kafka_ui(stack, a.rest)
    elif a.command == "up":
        # `just up --no-demo` puts the flag after the command, into `rest`.
        cmd_up(stack, demo=not (a.no_demo or "--no-demo" in a.rest))
    elif a.command == "infra-up":
        check_ports(stack)
        cmd_infra_up(stack)
    elif a.command == "down":
        cmd_down(stack)
    elif a.command == "infra-down":
        for n in ("kafka", "redis", "postgres"):
            stack.stop(n, timeout=30)
    elif a.command == "status":
        return cmd_status(stack)
    elif a.command == "logs":
        names = a.rest or sorted(stack.procs)
        for n in names:
            f = stack.logs / f"{n}.log"
            if f.exists():
                print(f"==> {n} <==")
                print(f.read_text(errors="replace")[-4000:])
    elif a.command == "env":
        for k, v in {**stack.layout.service_env(), "QUIZ_STACK_DIR": str(run_dir)}.items():
            print(f"export {k}={v}")
    elif a.command == "restart":
        # restart NAME: stop and start one process (fault tests and development).
        for name in a.rest:
            stack.stop(name)
            if name in ("postgres", "redis", "kafka"):
                {"postgres": start_postgres, "redis": start_redis, "kafka": start_kafka}[name](
                    stack
                )
            elif name == "nginx":
                start_nginx(stack)
            elif name == ADMIN_NAME:
                start_redis_commander(stack)
            else:
                start_services(stack, only=name)
    elif a.command == "kill":
        for name in a.rest:
            stack.stop(name, sig=signal.SIGKILL, timeout=5)
    elif a.command == "compose-nginx":
        COMPOSE_NGINX.write_text(compose_nginx_text())
        print(f"wrote {COMPOSE_NGINX.relative_to(ROOT)}")
    elif a.command == "nginx-test":
        conf = render_nginx(stack.layout)
        return subprocess.run(
            [nginx_binary(), "-t", "-p", str(conf.parent), "-c", str(conf)]
        ).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
