"""The admin views of a stack: Redis Commander (a server of the stack, see servers.py)
and kaskade, a terminal UI for Kafka (``just kafka-ui``)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from infra.stack.layout import Layout
from infra.stack.util import ROOT, VENV_BIN, say

ADMIN_NAME = "redis-commander"
ADMIN_DIR = ROOT / "infra" / "admin"
REDIS_COMMANDER = ADMIN_DIR / "node_modules" / "redis-commander" / "bin" / "redis-commander.js"


def admin_enabled() -> bool:
    """Redis Commander runs with the stack unless QUIZ_ADMIN=0."""
    return os.environ.get("QUIZ_ADMIN", "1").strip().lower() not in ("0", "no", "false", "off")


def admin_url(lay: Layout) -> str:
    return f"http://127.0.0.1:{lay.admin_port}/"


def admin_node_modules() -> str:
    """Install infra/admin's npm packages from its lock file (`npm ci`) when missing or
    when the lock changed; returns why it could not, or ''. Serialised with a file lock,
    since several test stacks may start at once."""
    lock_sum = hash_file(ADMIN_DIR / "package-lock.json")
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
    return hashlib.sha256(path.read_bytes()).hexdigest()


def redis_commander_argv(lay: Layout) -> list[str]:
    """Redis Commander on 127.0.0.1:admin_port against the stack's Redis."""
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
