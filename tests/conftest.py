"""Shared fixtures. Tests marked ``stack`` talk to the real stack that ``./dev test``
started (its URLs arrive as QUIZ_* variables); the others are pure unit tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import early
from tests.support.api import Api, next_loopback, unique
from tests.support.browser import chromium, node  # the browser tests' fixtures
from tests.support.stack import ROOT

# The helpers live in tests/support/; these names stay importable from here for test
# modules written before it.
__all__ = ["ROOT", "Api", "chromium", "next_loopback", "node", "unique"]

BASE_URL = os.environ.get("QUIZ_BASE_URL", "")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stack: needs the running stack (./dev test starts it)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line(
        "markers", "early(job): runs last, waiting for a job started beside the suite"
    )
    # The phases of ./dev test (infra/stack/cli.py, PHASES); unmarked tests run in the
    # parallel 'shared' phase.
    config.addinivalue_line("markers", "alone: runs with no other test beside it, first")
    config.addinivalue_line("markers", "last: runs alone after every other test")
    config.addinivalue_line(
        "markers", "after_install: runs at the end of its phase (waits on an install)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    early.run_last(items)
    if BASE_URL:
        return
    skip = pytest.mark.skip(reason="needs the stack: run through ./dev test")
    for item in items:
        if "stack" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly:
        early.start_jobs(session.items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    early.stop_jobs()


@pytest.fixture(scope="session")
def base_url() -> str:
    return BASE_URL


@pytest.fixture(scope="session")
def stack_dir() -> Path:
    return Path(os.environ["QUIZ_STACK_DIR"])


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    """A plain client of nginx (no auth header)."""
    with httpx.Client(base_url=base_url, timeout=20) as c:
        yield c


@pytest.fixture(scope="session")
def api(http: httpx.Client) -> Api:
    return Api(http)
