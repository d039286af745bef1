"""The project's own processes: the HTTP services on granian, the Kafka consumers and
the socket.io tier (uvicorn or granian, ``QUIZ_SIO_SERVER``), each one Server."""

from __future__ import annotations

from collections.abc import Callable

from infra.stack.layout import Layout, sio_on_granian
from infra.stack.server import Log, Server, answering, logged
from infra.stack.util import VENV_BIN


def granian(app: str, port: int, websockets: bool = False, uds: str = "") -> list[str]:
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
    if uds:  # granian then binds that Unix socket only
        args += ["--uds", uds]
    return [*args, app]


def uvicorn(app: str, port: int, uds: str = "", host: str = "127.0.0.1") -> list[str]:
    """The socket tier on uvicorn (``realtime_sio/serve.py``: the sans-io websockets
    implementation with the raw frame writer, no per-message deflate, uvloop), on
    ``port`` and, with ``uds``, also on that Unix socket (the gateway's way in)."""
    argv = [str(VENV_BIN / "python"), "-m", "realtime_sio.serve", "--host", host]
    argv += ["--port", str(port), "--app", app]
    return [*argv, "--uds", uds] if uds else argv


def sio_server(app: str, port: int, uds: str = "") -> list[str]:
    """The socket.io process's command: ``QUIZ_SIO_SERVER`` = uvicorn with the
    pre-framed writes (default) or granian (see realtime_sio/README.md for what each
    costs per socket and per delivery)."""
    if sio_on_granian():
        return granian(app, port, websockets=True)
    return uvicorn(app, port, uds)


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
        uds = lay.sio_sockets[i - 1] if lay.sio_sockets else ""
        argv = sio_server("realtime_sio.app:app", p, uds)
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
