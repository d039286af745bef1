"""The stack manager's own logic, in process (no server started): stack.json read and
written in one place, the server table that `up`, `down`, `restart` and the port
check share, and the environment each service process gets."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import (
    Layout,
    Proc,
    Stack,
    State,
    read_layout,
    read_pids,
    read_state,
    render_nginx,
)
from infra.stack.layout import write_state
from infra.stack.ports import planned_ports
from infra.stack.servers import server, servers


@pytest.fixture
def lay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    for var in ("QUIZ_DATABASE_URL", "QUIZ_REDIS_URL", "QUIZ_KAFKA_BOOTSTRAP", "QUIZ_ADMIN"):
        monkeypatch.delenv(var, raising=False)
    for kind in ("IAM", "QUIZ", "LEADERBOARD", "SIO", "CONSUMER"):
        monkeypatch.delenv(f"QUIZ_PROCS_{kind}", raising=False)
    return Layout.test(tmp_path / "run")


def test_state_round_trips_through_stack_json(lay: Layout) -> None:
    procs = {"redis": Proc(pid=123, argv=["redis-server", "--port", "1"], group="infra")}
    write_state(State(layout=lay, procs=procs))
    assert read_state(lay.run_dir) == State(layout=lay, procs=procs)
    assert read_layout(lay.run_dir) == lay
    assert read_pids(lay.run_dir) == {"redis": 123}
    assert not list(lay.run_dir.glob("*.tmp"))  # replaced at once, nothing left over


def test_a_stack_json_of_another_version_still_loads(lay: Layout) -> None:
    """Unknown fields are skipped and missing optional ones take their defaults, so a
    stack started by an older or newer checkout can still be stopped."""
    layout = {f.name: getattr(lay, f.name) for f in dataclasses.fields(lay)}
    layout["run_dir"] = str(lay.run_dir)
    del layout["admin_port"], layout["metrics_ports"]
    layout["some_future_port"] = 1
    lay.run_dir.mkdir(parents=True)
    procs = {"nginx": {"pid": 7, "argv": ["nginx"], "later": True}}
    (lay.run_dir / "stack.json").write_text(json.dumps({"layout": layout, "procs": procs}))
    stack = Stack.load(lay.run_dir)
    assert stack is not None
    assert stack.layout.admin_port == 0 and stack.layout.metrics_ports == {}
    assert stack.layout.run_dir == lay.run_dir and stack.layout.sio_ports == lay.sio_ports
    assert stack.procs == {"nginx": Proc(pid=7, argv=["nginx"], group="service")}


def test_no_stack_json_is_no_state(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    assert Stack.load(tmp_path) is None
    assert read_pids(tmp_path) == {}


def test_the_server_table_in_start_order(lay: Layout) -> None:
    names = [s.name for s in servers(lay)]
    assert names == [
        "postgres",
        "redis",
        "kafka",
        "iam-1",
        "quiz-1",
        "quiz-2",
        "leaderboard-1",
        "consumer-1",
        "sio-1",
        "sio-2",
        "nginx",
        "redis-commander",
    ]
    assert {s.group for s in servers(lay)} == {"infra", "service", "edge", "admin"}


def test_the_port_check_covers_every_port_of_the_layout(lay: Layout) -> None:
    planned = planned_ports(Stack(lay))
    ports = [p for p, _ in planned]
    assert len(ports) == len(set(ports))
    every = {lay.http_port, lay.pg_port, lay.redis_port, lay.kafka_port, lay.kafka_ctrl_port}
    every |= {lay.admin_port, *lay.iam_ports, *lay.quiz_ports, *lay.leaderboard_ports}
    every |= {*lay.sio_ports, *lay.metrics_ports.values()}
    assert set(ports) == every
    assert planned[0] == (lay.http_port, "nginx")  # the port people know comes first
    assert (lay.kafka_ctrl_port, "kafka") in planned


def test_servers_given_by_url_and_quiz_admin_0_leave_the_table(
    lay: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUIZ_ADMIN", "0")
    lay.external = {"database_url": "postgresql://u:secret@db.example/quiz"}
    names = {n for _, n in planned_ports(Stack(lay))}
    assert "postgres" not in names and "redis-commander" not in names
    assert {"redis", "kafka", "nginx", "quiz-1"} <= names
    assert server(lay, "redis-commander") is None


def test_each_service_process_gets_its_name_and_metrics_port(lay: Layout) -> None:
    for name, port in lay.metrics_ports.items():
        s = server(lay, name)
        assert s is not None and s.group == "service"
        assert s.env == {"QUIZ_PROCESS_NAME": name, "QUIZ_METRICS_PORT": str(port)}
        assert port in s.ports
    quiz = server(lay, "quiz-2")
    assert quiz is not None and str(lay.quiz_ports[1]) in quiz.command(Stack(lay))


def test_every_server_stops_within_its_own_timeout(lay: Layout) -> None:
    """`down` gives the servers with data to flush longer before SIGKILL."""
    timeouts = {s.name: s.stop_timeout for s in servers(lay)}
    assert timeouts["postgres"] == timeouts["kafka"] == 30
    assert {t for n, t in timeouts.items() if n not in ("postgres", "kafka")} == {10}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A run folder short enough for Unix socket paths (pytest's tmp_path may not be)."""
    with tempfile.TemporaryDirectory(prefix="lay") as d:
        yield Path(d)


def test_the_gateway_reaches_each_socket_io_process_by_its_unix_socket(
    monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    """nginx's socket.io pools name the Unix sockets that the sio processes are started
    with (one each, in the run folder), and no sio TCP port; the ports stay on the
    processes' command lines (health checks and tests use them)."""
    for var in ("QUIZ_SIO_UNIX", "QUIZ_SIO_SERVER", "QUIZ_PROCS_SIO"):
        monkeypatch.delenv(var, raising=False)
    lay = Layout.test(short_dir)
    assert lay.sio_sockets == [str(lay.run_dir / f"sio-{i}.sock") for i in (1, 2)]
    conf = render_nginx(lay).read_text()
    for i, (path, port) in enumerate(zip(lay.sio_sockets, lay.sio_ports, strict=True), 1):
        assert conf.count(f"server unix:{path} ") == 2  # sio_any and sio_sticky
        assert f"127.0.0.1:{port}" not in conf
        s = server(lay, f"sio-{i}")
        assert s is not None
        argv = s.command(Stack(lay))
        assert argv[argv.index("--uds") + 1] == path
        assert argv[argv.index("--port") + 1] == str(port)


@pytest.mark.parametrize("why", ["deep folder", "QUIZ_SIO_UNIX=0", "granian"])
def test_without_a_unix_socket_the_gateway_reaches_socket_io_by_tcp(
    why: str, monkeypatch: pytest.MonkeyPatch, short_dir: Path
) -> None:
    for var in ("QUIZ_SIO_UNIX", "QUIZ_SIO_SERVER", "QUIZ_PROCS_SIO"):
        monkeypatch.delenv(var, raising=False)
    run_dir = short_dir
    if why == "deep folder":
        run_dir = run_dir / ("d" * 90)
    elif why == "QUIZ_SIO_UNIX=0":
        monkeypatch.setenv("QUIZ_SIO_UNIX", "0")
    else:
        monkeypatch.setenv("QUIZ_SIO_SERVER", "granian")
    lay = Layout.test(run_dir)
    assert lay.sio_sockets == []
    conf = render_nginx(lay).read_text()
    assert "unix:" not in conf
    for i, port in enumerate(lay.sio_ports, 1):
        assert conf.count(f"server 127.0.0.1:{port} ") == 2
        s = server(lay, f"sio-{i}")
        assert s is not None and "--uds" not in s.command(Stack(lay))
