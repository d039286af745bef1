"""The pages under their Content-Security-Policy in a real browser (the policy itself:
tests/test_gateway_hardening.py): Chromium opens them and reports no violation for
anything this origin serves, the web client boots, and a third-party script would be
blocked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.stack


def test_pages_work_under_the_policy_in_chromium(
    base_url: str,
    tmp_path: Path,
    chromium: str,
    node: str,
) -> None:
    """Chromium reports no CSP violation for anything this origin serves; the web
    client boots, and a third-party script would be blocked. (The fixtures install
    Chromium and node where they are missing, as for tests/test_browser.py.)"""
    out = subprocess.run(
        [node, str(ROOT / "tests" / "browser" / "csp.mjs")],
        cwd=ROOT,
        env={**os.environ, "QUIZ_BASE_URL": base_url, "QUIZRT_CHROMIUM": chromium},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    pages = json.loads(out.stdout.strip().splitlines()[-1])
    origin = base_url.rstrip("/")
    for path, seen in pages.items():
        own = [v for v in seen["violations"] if v["blocked"].startswith((origin, "inline", "eval"))]
        assert not own, f"{path}: the policy blocks this origin's own content: {own}"
    assert pages["/"]["booted"], pages["/"]
    assert pages["/"]["guest_created"], pages["/"]
