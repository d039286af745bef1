"""Where one stack lives: its ports, process counts and run folder (``Layout``), and
its state file ``stack.json`` (``State``: the layout and the process table), read and
written here only.

    read_state(run_dir)      the State of a run folder, or None
    read_layout(run_dir)     its Layout (tests and tools: ports of a running stack)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from infra.stack.util import ROOT, free_port

STATE_FILE = "stack.json"

# How many processes of each kind a stack runs (QUIZ_PROCS_<KIND> changes one).
PROCS = {"iam": 1, "quiz": 2, "leaderboard": 1, "sio": 2, "consumer": 1}
# The HTTP services and the socket tier: each process has a port in ``<kind>_ports``.
HTTP_KINDS = ("iam", "quiz", "leaderboard", "sio")
ADMIN_PORT_DEV = 8082
# The servers given by environment variables: nothing is started for them.
EXTERNAL_VARS = {
    "database_url": "QUIZ_DATABASE_URL",
    "redis_url": "QUIZ_REDIS_URL",
    "kafka_bootstrap": "QUIZ_KAFKA_BOOTSTRAP",
}


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
    # The Unix socket of each socket.io process, by which nginx reaches it ([]: by its
    # TCP port). See ``sio_unix_sockets``.
    sio_sockets: list[str] = field(default_factory=list)

    @classmethod
    def dev(cls) -> Layout:
        n = proc_counts()
        lay = cls(
            run_dir=Path(os.environ.get("QUIZ_RUN_DIR", ROOT / ".run" / "dev")),
            http_port=int(os.environ.get("QUIZ_HTTP_PORT", 8080)),
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
        lay.sio_sockets = sio_unix_sockets(lay.run_dir, n["sio"])
        return move_dev_ports(lay)

    @classmethod
    def test(cls, run_dir: Path) -> Layout:
        n = proc_counts()
        lay = cls(
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
        lay.sio_sockets = sio_unix_sockets(run_dir, n["sio"])
        return lay

    def ports_of(self, kind: str) -> list[int]:
        """The ports of the processes of one of HTTP_KINDS."""
        ports: list[int] = getattr(self, f"{kind}_ports")
        return ports

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


def proc_counts() -> dict[str, int]:
    """PROCS with the QUIZ_PROCS_<KIND> variables applied."""
    return {k: int(os.environ.get(f"QUIZ_PROCS_{k.upper()}", d)) for k, d in PROCS.items()}


def sio_on_granian() -> bool:
    """``QUIZ_SIO_SERVER=granian``: the socket tier on granian, not uvicorn (default)."""
    return os.environ.get("QUIZ_SIO_SERVER", "uvicorn") == "granian"


def sio_unix_sockets(run_dir: Path, n: int) -> list[str]:
    """Where the gateway reaches the ``n`` socket.io processes: a Unix socket each in
    the run folder (every room event crosses that hop once per recipient, and a Unix
    socket write costs about half of a loopback TCP one), or [] for their TCP ports:
    with ``QUIZ_SIO_UNIX=0``, on granian (``QUIZ_SIO_SERVER=granian`` binds one address
    only), or when the path would be too long for a Unix socket."""
    if os.environ.get("QUIZ_SIO_UNIX", "1") == "0" or sio_on_granian():
        return []
    paths = [str(run_dir.absolute() / f"sio-{i}.sock") for i in range(1, n + 1)]
    return paths if all(len(p.encode()) <= _UNIX_PATH_MAX for p in paths) else []


_UNIX_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


def _metrics_ports(n: dict[str, int], port: Callable[[int], int]) -> dict[str, int]:
    """One /metrics port per service process: ``port(i)`` for the i-th of them."""
    names = [f"{kind}-{i}" for kind in PROCS for i in range(1, n[kind] + 1)]
    return {name: port(i) for i, name in enumerate(names)}


def external_servers() -> dict[str, str]:
    return {k: os.environ[v] for k, v in EXTERNAL_VARS.items() if os.environ.get(v)}


# --------------------------------------------------------------------------- ports

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


def shift_ports(lay: Layout, offset: int) -> None:
    """Add ``offset`` to every port of ``lay`` (each ``*_port``/``*_ports`` field)."""
    for f in dataclasses.fields(lay):
        value = getattr(lay, f.name)
        if f.name.endswith("_port") and isinstance(value, int) and value:
            setattr(lay, f.name, value + offset)
        elif f.name.endswith("_ports") and isinstance(value, list):
            setattr(lay, f.name, [p + offset for p in value])
        elif f.name.endswith("_ports") and isinstance(value, dict):
            setattr(lay, f.name, {k: p + offset for k, p in value.items()})


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


# --------------------------------------------------------------------------- stack.json


class Proc(msgspec.Struct):
    """One started process: its pid (the leader of its own process group)."""

    pid: int
    argv: list[str]
    group: str = "service"


class State(msgspec.Struct):
    """The content of ``stack.json``. Fields this version does not know are skipped:
    a file written by another version must still load (to be stopped, pruned or
    reused)."""

    layout: Layout
    procs: dict[str, Proc] = msgspec.field(default_factory=dict)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is Path:
        return Path(obj)
    raise NotImplementedError(f"cannot decode {kind.__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)
_DECODER = msgspec.json.Decoder(State, dec_hook=_dec_hook)


def state_file(run_dir: Path) -> Path:
    return run_dir / STATE_FILE


def read_state(run_dir: Path) -> State | None:
    """The state of the stack in ``run_dir``; None when it has no stack.json."""
    try:
        raw = state_file(run_dir).read_bytes()
    except FileNotFoundError:
        return None
    return _DECODER.decode(raw)


def read_layout(run_dir: Path) -> Layout:
    """The layout of the stack in ``run_dir`` (which must have one)."""
    state = read_state(run_dir)
    if state is None:
        raise FileNotFoundError(state_file(run_dir))
    return state.layout


def read_pids(run_dir: Path) -> dict[str, int]:
    """Process name -> pid of every process the stack in ``run_dir`` lists."""
    state = read_state(run_dir)
    return {name: p.pid for name, p in state.procs.items()} if state else {}


def write_state(state: State) -> None:
    """Replace stack.json at once (a reader never sees half a file)."""
    run_dir = state.layout.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_file(run_dir).with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(_ENCODER.encode(state), indent=1))
    tmp.replace(state_file(run_dir))
