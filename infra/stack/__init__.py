"""The stack as plain local processes (no Docker): ``python -m infra.stack up``,
``down``, ``test``, ... (``--help`` and infra/stack/cli.py list the commands).

The package, bottom up: ``util`` (folders, progress lines, ports, pids, waiting),
``layout`` (ports and folders of a stack; ``stack.json`` read and written there
only), ``procs`` (the process table: spawn, stop), ``packages`` (server binaries),
``nginx`` (the gateway's config), ``admin`` (Redis Commander, kaskade), ``server``
(what a server is: command, environment, readiness, log, ports; the one way to
start servers), ``engines`` (PostgreSQL, Redis, Kafka), ``apps`` (the services and
the socket tier), ``servers`` (the whole table, in start order; nginx; restart),
``ports`` (the port-conflict check), ``cli`` (the commands). The names below are the
ones the rest of the project imports.
"""

from infra.stack.admin import ADMIN_NAME, admin_enabled, admin_url
from infra.stack.apps import granian, sio_server
from infra.stack.cli import cmd_down, cmd_infra_up, cmd_test, cmd_up, main
from infra.stack.engines import kafka_log4j
from infra.stack.layout import (
    Layout,
    Proc,
    State,
    move_dev_ports,
    read_layout,
    read_pids,
    read_state,
    sio_unix_sockets,
)
from infra.stack.nginx import COMPOSE_NGINX, RATE_LIMITS, compose_nginx_text, render_nginx
from infra.stack.packages import kafka_libs, need_binary, nginx_binary
from infra.stack.procs import Stack, kill_group
from infra.stack.servers import start_nginx, start_redis_commander, start_services
from infra.stack.util import (
    ROOT,
    VENV_BIN,
    die,
    free_port,
    http_ok,
    pid_alive,
    port_open,
    reap,
    say,
    wait_for,
)

__all__ = [
    "ADMIN_NAME",
    "COMPOSE_NGINX",
    "RATE_LIMITS",
    "ROOT",
    "VENV_BIN",
    "Layout",
    "Proc",
    "Stack",
    "State",
    "admin_enabled",
    "admin_url",
    "cmd_down",
    "cmd_infra_up",
    "cmd_test",
    "cmd_up",
    "compose_nginx_text",
    "die",
    "free_port",
    "granian",
    "http_ok",
    "kafka_libs",
    "kafka_log4j",
    "kill_group",
    "main",
    "move_dev_ports",
    "need_binary",
    "nginx_binary",
    "pid_alive",
    "port_open",
    "read_layout",
    "read_pids",
    "read_state",
    "reap",
    "render_nginx",
    "say",
    "sio_server",
    "sio_unix_sockets",
    "start_nginx",
    "start_redis_commander",
    "start_services",
    "wait_for",
]
