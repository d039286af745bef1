"""Every secret the harness handled in this pytest run (passwords, access and
refresh tokens), so tests/test_secrets_logs.py can prove none reached a log."""

from __future__ import annotations

HANDLED: set[str] = set()


def remember(*values: str) -> None:
    """Note secrets the test process sent or received."""
    HANDLED.update(v for v in values if v and len(v) >= 8)


def remember_tokens(tokens: dict) -> None:
    remember(tokens.get("access_token", ""), tokens.get("refresh_token", ""))
