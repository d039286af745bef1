"""Every server of a stack in the order ``up`` starts them (``servers``), and the
usual starts (``start_infra``, ``start_services``, ...) and ``restart``.

    postgres, redis, kafka              engines.py (a QUIZ_*_URL replaces one)
    iam-N, quiz-N, leaderboard-N,       apps.py, started together
    consumer-N, sio-N
    nginx                               the gateway (below)
    redis-commander                     the admin view of Redis (unless QUIZ_ADMIN=0)
"""

from __future__ import annotations

import subprocess

from infra.stack.admin import (
    ADMIN_NAME,
    admin_enabled,
    admin_node_modules,
    admin_url,
    redis_commander_argv,
)
from infra.stack.apps import service_servers
from infra.stack.engines import create_topics, infra_servers, migrate
from infra.stack.layout import Layout
from infra.stack.nginx import render_nginx
from infra.stack.packages import nginx_binary
from infra.stack.procs import Stack
from infra.stack.server import Server, answering, start
from infra.stack.util import at_once, die, say


def servers(lay: Layout) -> list[Server]:
    """Every server of this stack, in the order `up` starts them."""
    table = [*infra_servers(lay), *service_servers(lay), nginx(lay)]
    if admin_enabled() and lay.admin_port:
        table.append(redis_commander(lay))
    return table


def server(lay: Layout, name: str) -> Server | None:
    return next((s for s in servers(lay) if s.name == name), None)


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
    """PostgreSQL, Redis and Kafka started at once, then the topics and the schema at
    once."""
    start(stack, infra_servers(stack.layout))
    at_once(lambda: create_topics(stack), lambda: migrate(stack))


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
