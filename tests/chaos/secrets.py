"""Secrets and logs: every secret the harness handled in this pytest run
(passwords, access and refresh tokens), and a scan of the stack's logs for them
and for anything shaped like a secret (tests/test_secrets_logs.py, and each
fault scenario for its own players' tokens)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

HANDLED: set[str] = set()
# ``./dev test`` runs the suite in several pytest processes (infra/stack/cli.py,
# PHASES); each also notes its secrets here, so a scan sees every process's.
_SHARED_FILE = "handled-secrets"

JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")
SHAPES = {
    "a JWT": JWT,
    "a PEM private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an argon2 hash": re.compile(r"\$argon2(id|i|d)\$"),
    "a bearer header": re.compile(r"Bearer\s+[\w-]{20,}"),
    "a token in a query string": re.compile(r"[?&]token=[\w.-]{20,}"),
}


def remember(*values: str) -> None:
    """Note secrets the test process sent or received."""
    new = {v for v in values if v and len(v) >= 8} - HANDLED
    HANDLED.update(new)
    stack_dir = os.environ.get("QUIZ_STACK_DIR")
    if new and stack_dir:
        with open(Path(stack_dir) / _SHARED_FILE, "a") as f:
            f.write("".join(f"{v}\n" for v in new if "\n" not in v))


def handled() -> set[str]:
    """Every secret this pytest process, and every earlier or parallel one of the same
    test run, handled."""
    stack_dir = os.environ.get("QUIZ_STACK_DIR")
    path = Path(stack_dir) / _SHARED_FILE if stack_dir else None
    if path is None or not path.exists():
        return set(HANDLED)
    return HANDLED | set(path.read_text().splitlines())


def remember_tokens(tokens: dict) -> None:
    remember(tokens.get("access_token", ""), tokens.get("refresh_token", ""))


def secrets_in_logs(stack_dir: Path, secrets: Iterable[str]) -> list[str]:
    """Where any of ``secrets``, or anything shaped like a secret, appears in
    stack_dir/logs/*.log; [] when nowhere."""
    wanted = {s for s in secrets if len(s) >= 12}
    found = []
    for log in sorted((stack_dir / "logs").glob("*.log")):
        text = log.read_text(errors="replace")
        for s in wanted:
            i = text.find(s)
            if i >= 0:
                found.append(f"{log.name}: a secret: ...{text[max(0, i - 80) : i + 20]!r}")
        for what, pattern in SHAPES.items():
            m = pattern.search(text)
            if m:
                found.append(f"{log.name}: {what}: ...{text[max(0, m.start() - 80) : m.end()]!r}")
    return found
