"""The admin tools of the plain-process stack, and starting next to another stack.

On the real stack: Redis Commander (started the way ``./dev up`` starts it) shows a
running session's board key in Chromium; kaskade (``just kafka-ui``), run in tmux,
shows SCORE_CHANGE and TOP_10, the leaderboard consumer group and its lag, and the
topic's messages. Without a stack: ``up`` refuses in one line, before starting
anything, when one of its ports is taken; every image of infra/compose.yaml is pinned.

What the tests need (tmux, Chromium, node) is installed with apt-get when possible
(root on Debian), as tests/test_browser.py does; otherwise they fail with the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from infra import stack as st
from services.common.settings import get_settings
from tests.conftest import ROOT, Api
from tests.support.api import answer, join
from tests.support.browser import apt_install
from tests.support.game import Quiz

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it starts and stops redis-commander, and kaskade must see SCORE_CHANGE nearly empty.
pytestmark = pytest.mark.alone

SCENARIO = ROOT / "tests" / "browser" / "redis_commander.mjs"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def played() -> Iterator[dict]:
    """A live session through the public API: a player joined and answered question 1
    right, so its board key holds the player and SCORE_CHANGE/TOP_10 have records."""
    with httpx.Client(base_url=os.environ["QUIZ_BASE_URL"], timeout=20) as http:
        api = Api(http)
        quiz = Quiz(api, 2, limit_s=60)
        session = quiz.open_session("live")
        player = api.guest()
        assert join(http, player, code=session["code"]).status_code == 200
        quiz.advance(session["id"])
        r = answer(http, player, session["id"], quiz.question_ids[0], quiz.answer_of(0))
        assert r.status_code == 200, r.text
        yield {"session_id": session["id"], "user_id": player["user"]["id"]}


@pytest.fixture(scope="module")
def redis_commander(stack_dir: Path) -> Iterator[str]:
    """Redis Commander on this test stack, started (and stopped) by the stack's own code."""
    if not st.admin_enabled():
        pytest.fail("QUIZ_ADMIN=0 is set: Redis Commander is off")
    stack = st.Stack.load(stack_dir)
    assert stack is not None
    why = st.start_redis_commander(stack)
    assert not why and stack.running(st.ADMIN_NAME), f"Redis Commander did not start: {why}"
    try:
        yield st.admin_url(stack.layout)
    finally:
        # Reloaded: other processes of the stack may have been restarted meanwhile.
        (st.Stack.load(stack_dir) or stack).stop(st.ADMIN_NAME)


@pytest.fixture(scope="module")
def tmux() -> str:
    """The tmux binary, installed with apt-get when missing and possible."""
    if not shutil.which("tmux"):
        why = apt_install("tmux")
        if not shutil.which("tmux"):
            pytest.fail(
                f"tmux is missing and could not be installed ({why}); `apt-get install tmux`"
            )
    return shutil.which("tmux") or "tmux"


class Terminal:
    """One tmux session on a private server: a fixed-size terminal to run a TUI in."""

    def __init__(self, tmux: str, command: list[str], width: int = 200, height: int = 50):
        self.dir = Path(tempfile.mkdtemp(prefix="quizrt-tmux-"))
        self.tmux = [tmux, "-S", str(self.dir / "socket"), "-f", "/dev/null"]
        env = [f"{k}={v}" for k, v in os.environ.items() if k.startswith("QUIZ_")]
        r = subprocess.run(
            [
                *self.tmux,
                "new-session",
                "-d",
                "-P",  # print the pane's pid: the command's process group, stopped in close()
                "-F",
                "#{pane_pid}",
                "-s",
                "t",
                "-x",
                str(width),
                "-y",
                str(height),
                "env",
                *env,
                "TERM=xterm-256color",
                # Textual would take COLUMNS/LINES (pytest's own) over the pane's size.
                f"COLUMNS={width}",
                f"LINES={height}",
                *command,
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        self.pid = int(r.stdout.strip())

    def screen(self) -> str:
        r = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True
        )
        return r.stdout

    def keys(self, *keys: str) -> None:
        for k in keys:
            subprocess.run([*self.tmux, "send-keys", "-t", "t", k], check=True)
            time.sleep(0.3)

    def wait(
        self, check: Callable[[str], bool], timeout_s: float = 120, every: tuple[str, ...] = ()
    ) -> str:
        """Poll the screen until ``check(screen)``; send ``every`` keys now and then."""
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while True:
            text = self.screen()
            if check(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"terminal never showed what was expected:\n{text}")
            if every and time.monotonic() - last > 10:  # a refresh takes a while when busy
                self.keys(*every)
                last = time.monotonic()
            time.sleep(0.5)

    def close(self) -> None:
        """Quit the TUI (ctrl+c), then end its process group: `just` and kaskade outlive
        the SIGHUP of a closing tmux."""
        subprocess.run([*self.tmux, "send-keys", "-t", "t", "C-c"], capture_output=True)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, sig)
            deadline = time.monotonic() + 5
            while st.pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not st.pid_alive(self.pid):
                break
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def topic_row(screen: str, topic: str) -> list[str] | None:
    """The cells of ``topic``'s row in kaskade's topic table (name, partitions, ...)."""
    for line in screen.splitlines():
        cells = line.strip(" │").split()
        if cells and cells[0] == topic:
            return cells
    return None


# --------------------------------------------------------------------------- on the stack


@pytest.mark.stack
@pytest.mark.slow
def test_kaskade_shows_topics_consumer_group_lag_and_messages(played: dict, tmux: str) -> None:
    s = get_settings()
    just = str(Path(sys.executable).parent / "just")
    term = Terminal(tmux, [just, "kafka-ui"])
    try:
        # Both topics; SCORE_CHANGE read by the consumer group (ctrl+r refreshes).
        def topics_and_group(text: str) -> bool:
            row = topic_row(text, s.topic_score_change)
            # A cell kaskade has not filled yet shows "…": not yet, look again.
            groups = row[4] if row and len(row) > 4 else ""
            return bool(topic_row(text, s.topic_top10) and groups.isdigit() and int(groups) >= 1)

        screen = term.wait(topics_and_group, every=("C-r",))
        score = topic_row(screen, s.topic_score_change)
        assert score is not None and score[-1].lstrip("≈").isdigit()  # the Lag column
        # Open SCORE_CHANGE, then its Groups tab: the group, its state and lag. Rows are
        # sorted by name. Keys sent while kaskade is busy may be lost: every step checks
        # what the screen shows and is retried.
        rows = _table_names(screen)
        wanted = f"Topic Details [{s.topic_score_change}]"
        for _ in range(5):
            term.keys(*["Up"] * len(rows), *["Down"] * rows.index(s.topic_score_change), "Enter")
            opened = term.wait(lambda t: "Topic Details [" in t and "Groups [" in t, timeout_s=60)
            if wanted in opened:
                break
            term.keys("Escape")
            time.sleep(2)
        else:
            raise AssertionError(f"could not open {s.topic_score_change}:\n{opened}")
        # The Groups tab's row: ID, coordinator, state, assignor, partitions, members, lag.
        states = "stable|empty|preparingrebalance|completingrebalance"
        group_row = re.compile(
            rf"\b{re.escape(s.consumer_group)}\s+\S+:\d+/\d+\s+({states})\s+\S+\s+\d+\s+\d+\s+(\d+)",
            re.IGNORECASE,
        )
        found = None
        for _ in range(10):  # the tabs wrap around: step right until the Groups tab shows
            term.keys("Right")
            with contextlib.suppress(AssertionError):
                found = group_row.search(term.wait(lambda t: bool(group_row.search(t)), 5))
                break
        assert found is not None, f"no {s.consumer_group} group shown:\n{term.screen()}"
        lag = found.group(2)
        assert int(lag) >= 0
    finally:
        term.close()
    # `just kafka-ui SCORE_CHANGE`: the topic's messages, the session's among them.
    term = Terminal(tmux, [just, "kafka-ui", s.topic_score_change])
    try:
        term.wait(lambda t: played["session_id"] in t and "schema_version" in t)
    finally:
        term.close()


# At the end of its phase: ./dev test installs Redis Commander's packages (npm ci, a
# fresh clone's half a minute) beside the stack's start and the phase's other tests.
@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.after_install
def test_redis_commander_lists_the_board_key_in_chromium(
    redis_commander: str,
    played: dict,
    chromium: str,
    node: str,
) -> None:
    key = f"lb:{{s:{played['session_id']}}}"
    env = {
        **os.environ,
        "QUIZRT_CHROMIUM": chromium,
        "QUIZRT_ADMIN_URL": redis_commander,
        "QUIZRT_KEY": key,
        "QUIZRT_MEMBER": played["user_id"],
    }
    r = subprocess.run(
        [node, str(SCENARIO)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, f"{r.stderr[-4000:]}\n{r.stdout[-1000:]}"
    shown = json.loads(r.stdout.strip().splitlines()[-1])
    # A tree node's id names the server: this stack's Redis, database 0.
    assert shown["node_id"] == f"R:127.0.0.1:{urlsplit(get_settings().redis_url).port}:0:{key}"
    assert f"Key: {key}" in shown["details"] and played["user_id"] in shown["details"]


def _table_names(screen: str) -> list[str]:
    """First cells of the topic table's rows, top to bottom."""
    rows = []
    for line in screen.splitlines():
        cells = line.strip(" │").split()
        if len(cells) >= 8 and cells[1].isdigit():
            rows.append(cells[0])
    return rows


# --------------------------------------------------------------------------- without a stack


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the test stack's QUIZ_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIZ_")}
    return {**env, **extra}


def test_up_refuses_in_one_line_when_a_port_is_taken(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # A random offset keeps the rest of the stack's ports off the dev stack's.
        offset = 500 + int.from_bytes(os.urandom(1), "big")
        env = _clean_env(
            QUIZ_RUN_DIR=str(run_dir), QUIZ_PORT_OFFSET=str(offset), QUIZ_KAFKA_PORT=str(port)
        )
        cmd = [sys.executable, "-m", "infra.stack", "up", "--dir", str(run_dir)]
        try:
            r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        finally:
            down = [sys.executable, "-m", "infra.stack", "down", "--dir", str(run_dir)]
            subprocess.run(down, cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    msg = lines[0]
    me = Path("/proc/self/comm").read_text().strip()  # how /proc names this process
    assert f"port {port} (kafka) is taken by {me} (pid {os.getpid()}, in {os.getcwd()})" in msg
    assert "nothing was started" in msg and "QUIZ_PORT_OFFSET=" in msg and "QUIZ_KAFKA_PORT=" in msg
    assert "Traceback" not in r.stderr + r.stdout
    # Nothing started: no state, no logs, no data folders.
    assert not run_dir.exists() or not any(run_dir.iterdir()), list(run_dir.rglob("*"))


def test_port_offset_moves_every_dev_port_and_one_variable_moves_one() -> None:
    base = st.move_dev_ports(st.Layout.dev(), env={})
    lay = st.Layout.dev()
    st.move_dev_ports(lay, env={"QUIZ_PORT_OFFSET": "10", "QUIZ_REDIS_PORT": "6000"})
    assert lay.redis_port == 6000
    assert (lay.http_port, lay.pg_port, lay.kafka_port, lay.kafka_ctrl_port, lay.admin_port) == (
        base.http_port + 10,
        base.pg_port + 10,
        base.kafka_port + 10,
        base.kafka_ctrl_port + 10,
        base.admin_port + 10,
    )
    assert lay.quiz_ports == [p + 10 for p in base.quiz_ports]
    assert lay.metrics_ports == {k: p + 10 for k, p in base.metrics_ports.items()}

    # Two stacks an offset apart share no port.
    def ports(x: st.Layout) -> set[int]:
        singles = {x.http_port, x.pg_port, x.redis_port, x.kafka_port, x.kafka_ctrl_port}
        lists = [*x.iam_ports, *x.quiz_ports, *x.leaderboard_ports, *x.sio_ports]
        return singles | {x.admin_port, *lists, *x.metrics_ports.values()}

    moved = st.move_dev_ports(st.Layout.dev(), env={"QUIZ_PORT_OFFSET": "10"})
    assert not ports(base) & ports(moved)


def test_every_compose_image_is_pinned() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
    images = {name: svc.get("image", "") for name, svc in compose["services"].items()}
    images["x-app"] = compose["x-app"]["image"]
    for name, image in images.items():
        tag = image.split("/")[-1].partition(":")[2]
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), f"{name}: {image}"
    assert images["kafka-ui"].split(":")[0].endswith("kafbat/kafka-ui")
    assert "redis-commander" in images["redis-commander"]
