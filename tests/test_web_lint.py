"""The web client passes ESLint and its JSDoc type check (``web/lint.sh``: eslint and
``tsc --checkJs --noEmit``). No stack needed; npm installs the pinned tools once."""

from __future__ import annotations

import subprocess

from tests.support.stack import ROOT


def test_web_client_passes_eslint_and_the_jsdoc_type_check() -> None:
    r = subprocess.run(
        ["sh", str(ROOT / "web" / "lint.sh")], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, f"web/lint.sh failed:\n{r.stdout}\n{r.stderr}"
