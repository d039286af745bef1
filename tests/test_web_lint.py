"""The web client passes ESLint and its JSDoc type check (``web/lint.sh``: eslint and
``tsc --checkJs --noEmit``). No stack needed; npm installs the pinned tools once."""

from __future__ import annotations

import pytest

from tests.support.early import EarlyJob
from tests.support.stack import ROOT

# Runs beside the rest of the suite (tests/support/early.py).
WEB_LINT = EarlyJob("web-lint", ["sh", str(ROOT / "web" / "lint.sh")], timeout=600)


@pytest.mark.early(WEB_LINT)
def test_web_client_passes_eslint_and_the_jsdoc_type_check() -> None:
    r = WEB_LINT.result()
    assert r.returncode == 0, f"web/lint.sh failed:\n{r.stdout}\n{r.stderr}"
