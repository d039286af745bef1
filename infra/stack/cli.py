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
import functools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from infra.stack.admin import (
    ADMIN_NAME,
    admin_enabled,
    admin_node_modules,
    admin_url,
    kaskade_argv,
)
from infra.stack.engines import run_module
from infra.stack.layout import Layout, read_state
from infra.stack.nginx import COMPOSE_NGINX, compose_nginx_text, render_nginx
from infra.stack.packages import nginx_binary
from infra.stack.ports import check_ports
from infra.stack.procs import Stack
from infra.stack.servers import (
    infra_servers,
    restart,
    servers,
    start_infra,
    start_nginx,
    start_redis_commander,
    start_services,
)
from infra.stack.util import ROOT, VENV_BIN, at_once, die, pid_alive, port_open, say


def cmd_infra_up(stack: Stack) -> None:
    stack.save()
    start_infra(stack)


def cmd_up(stack: Stack, demo: bool = True, web: bool = True) -> None:
    if all(stack.running(s.name) for s in servers(stack.layout) if s.group in ("service", "edge")):
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


def summary(stack: Stack, info: dict[str, Any]) -> None:
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


def seed_demo(stack: Stack) -> dict[str, Any]:
    r = run_module(stack, "services.quiz.demo", capture=True)
    if r.returncode != 0:
        say(f"demo quiz: could not be loaded:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return {}
    try:
        info: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        return info
    except (json.JSONDecodeError, IndexError):
        return {}


def build_web() -> None:
    r = subprocess.run(["sh", str(ROOT / "web" / "build.sh")], cwd=ROOT)
    if r.returncode != 0:
        say("web client: build failed (the API still works)")


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
    """Stop every process of the stack, in the reverse order of `up`."""
    table = {s.name: s for s in reversed(servers(stack.layout))}
    names = [n for n in table if n in stack.procs] + [n for n in stack.procs if n not in table]
    infra = {n for n, s in table.items() if s.group == "infra"}

    def stop(name: str) -> None:
        if stack.running(name):
            say(f"stopping {name} (pid {stack.procs[name].pid})")
        stack.stop(name, timeout=table[name].stop_timeout if name in table else 10)

    # Two waves, each at once: nginx and every service, then what they use.
    for wave in ([n for n in names if n not in infra], [n for n in names if n in infra]):
        if wave:
            at_once(*[functools.partial(stop, n) for n in wave])
    say("stopped")


def cmd_status(stack: Stack) -> int:
    bad = 0
    for name, p in stack.procs.items():
        alive = pid_alive(p.pid)
        bad += not alive
        print(f"  {name:16} pid {p.pid:>7}  {'running' if alive else 'DEAD'}")
    if not stack.procs:
        print("  nothing running")
    return 1 if bad else 0


def cmd_logs(stack: Stack, names: list[str]) -> None:
    for n in names or sorted(stack.procs):
        f = stack.log(n)
        if f.exists():
            print(f"==> {n} <==")
            print(f.read_text(errors="replace")[-4000:])


def cmd_kafka_ui(stack: Stack, args: list[str]) -> None:
    lay = stack.layout
    argv = kaskade_argv(lay, args)
    if not Path(argv[0]).exists():
        die("kaskade is not in .venv: `./dev --list` installs it (uv sync, dev group)")
    if "kafka_bootstrap" not in lay.external and not port_open(lay.kafka_port):
        die(f"no Kafka on {lay.kafka_bootstrap}: start the stack first (`./dev up`)")
    os.execv(argv[0], argv)


def cmd_test(pytest_args: list[str]) -> int:
    run_dir = ROOT / ".run" / f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    lay = Layout.test(run_dir)
    stack = Stack(lay)
    say(f"test stack in {run_dir} (nginx on {lay.http_port})")
    prune_test_runs()
    # Redis Commander's npm packages (infra/admin, `npm ci` on a fresh clone: half a
    # minute) install beside the stack's start and the first tests; the admin tools'
    # test, which starts it, waits for them on the install's file lock.
    admin = threading.Thread(target=prepare_admin, name="admin-npm-ci", daemon=True)
    admin.start()
    rc = 1
    try:
        web = build_web if (ROOT / "web" / "build.sh").exists() else lambda: None
        at_once(web, lambda: cmd_infra_up(stack))  # nginx serves the build: both before it
        start_services(stack)
        start_nginx(stack)
        env = {**os.environ, **lay.service_env(), "QUIZ_STACK_DIR": str(run_dir)}
        rc = run_pytest(pytest_args, env, run_dir)
    finally:
        admin.join(timeout=120)
        # Reload: tests may have restarted processes (fault tests), so the pids
        # in stack.json are newer than the ones this process remembers.
        cmd_down(Stack.load(run_dir) or stack)
        if rc == 0 and not os.environ.get("QUIZ_KEEP_TEST_RUN"):
            remove_run_dir(run_dir)
        else:
            say(f"logs kept in {run_dir}/logs")
    return rc


def prepare_admin() -> None:
    """Install Redis Commander's packages now when the stack has it (see cmd_test)."""
    if admin_enabled():
        why = admin_node_modules()
        if why:
            say(f"redis-commander: {why}")


# The whole suite runs in three phases on the one stack, each a pytest run:
#   alone   the modules marked ``alone``: they stop, restart or overload servers, count
#           process-wide metrics exactly or time themselves, so they run one test at a
#           time with no other test beside them. The ``early`` jobs (the cluster run, at
#           the lowest CPU priority, and the web client's lint) run beside this phase.
#   shared  every other test, in PARALLEL_WORKERS pytest-xdist workers, a module each.
#   last    the modules marked ``last``, one at a time: they scan the logs the whole run
#           wrote (a secret or an error from any phase fails them).
# One test at a time, the suite leaves half of the two cores idle (it mostly waits for
# the servers and for game timers); the shared phase overlaps that waiting.
PARALLEL_WORKERS = 2
PHASES = (
    ("alone", ["-m", "(alone or early) and not last"]),
    (
        "shared",
        ["-m", "not (alone or early or last)", "-n", str(PARALLEL_WORKERS), "--dist", "loadfile"],
    ),
    ("last", ["-m", "last"]),
)
NO_TESTS = 5  # pytest's exit code when a selection matched no test


def run_pytest(args: list[str], env: dict[str, str], run_dir: Path) -> int:
    """pytest over the stack: with test paths, ``-k`` or ``-m`` in ``args``, one run as
    asked; otherwise the whole suite in its PHASES (every phase runs; the result is the
    first failure's exit code), then one line per phase and the totals."""
    pytest = str(VENV_BIN / "pytest")
    # QUIZ_TEST_PHASES=0: the whole suite as one plain pytest run, one test at a time.
    phased = os.environ.get("QUIZ_TEST_PHASES", "1") != "0"
    if not phased or any(a in ("-k", "-m") or a.startswith(("tests", "-k", "-m")) for a in args):
        say("running pytest")
        return subprocess.run([pytest, *args], cwd=ROOT, env=env).returncode
    rcs: list[int] = []
    lines: list[str] = []
    totals: dict[str, int] = {}
    for name, select in PHASES:
        say(f"running pytest, phase {name} ({' '.join(select)})")
        t0 = time.monotonic()
        junit = run_dir / f"junit-{name}.xml"
        rc = subprocess.run([pytest, *select, f"--junitxml={junit}", *args], cwd=ROOT, env=env)
        rcs.append(0 if rc.returncode == NO_TESTS else rc.returncode)
        counts = junit_counts(junit)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        verdict = "ok" if rcs[-1] == 0 else f"FAILED (exit {rc.returncode})"
        tests = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        lines.append(f"  {name:7} {verdict:16} {time.monotonic() - t0:5.0f} s   {tests}")
    say("test phases:\n" + "\n".join(lines))
    say("all phases: " + ", ".join(f"{v} {k}" for k, v in totals.items() if v))
    return next((rc for rc in rcs if rc), 0)


def junit_counts(path: Path) -> dict[str, int]:
    """passed / failed / errors / skipped in a pytest JUnit XML report. (Counted from
    the report, not pytest-xdist's summary line: that one counts the tests that share
    a node id, schemathesis' one per API operation, once.)"""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    if not path.exists():
        return counts
    for case in ElementTree.parse(path).iter("testcase"):
        kinds = {child.tag for child in case}
        kind = (
            "failed" if "failure" in kinds
            else "errors" if "error" in kinds
            else "skipped" if "skipped" in kinds
            else "passed"
        )  # fmt: skip
        counts[kind] += 1
    return counts


def remove_run_dir(run_dir: Path) -> None:
    pg = run_dir / "pg"
    if pg.is_symlink():  # data kept outside the checkout (see servers.pg_data_dir)
        shutil.rmtree(pg.resolve(), ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)


def prune_test_runs(keep: int = 3) -> None:
    """Delete the folders of finished test runs, keeping the newest few for their logs."""
    dead = []
    for d in (ROOT / ".run").glob("test-*"):
        state = read_state(d)
        if state is None or not any(pid_alive(p.pid) for p in state.procs.values()):
            dead.append(d)
    dead.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for d in dead[keep:]:
        remove_run_dir(d)


COMMANDS = [
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
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="infra.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("command", choices=COMMANDS)
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
        for s in reversed(infra_servers(stack.layout)):
            stack.stop(s.name, timeout=30)
    elif a.command == "status":
        return cmd_status(stack)
    elif a.command == "logs":
        cmd_logs(stack, a.rest)
    elif a.command == "env":
        for k, v in {**stack.layout.service_env(), "QUIZ_STACK_DIR": str(run_dir)}.items():
            print(f"export {k}={v}")
    elif a.command == "restart":
        # restart NAME: stop and start one process (fault tests and development).
        for name in a.rest:
            restart(stack, name)
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
