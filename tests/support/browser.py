"""The browser tests' fixtures (tests/test_browser.py, tests/test_gateway_csp.py,
tests/test_admin_tools.py): Debian's Chromium and node with web/node_modules, installed
with apt-get when missing and possible (root on Debian); otherwise the test fails with
the command to run. A missing browser is never a silent skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import ROOT

CHROMIUM = os.environ.get("QUIZRT_CHROMIUM", "/usr/bin/chromium")


def apt_install(*packages: str) -> str:
    """Install Debian packages as root; returns why it could not, or ''."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("apt-get") or not Path("/etc/debian_version").exists():
        return "not Debian (no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:  # the package lists may be missing on a fresh machine
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return "" if r.returncode == 0 else f"apt-get failed: {r.stderr[-800:]}"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of the Chromium binary, installed with apt-get if missing and possible."""
    if not Path(CHROMIUM).exists():
        why = apt_install("chromium")
        if not Path(CHROMIUM).exists():
            pytest.fail(
                f"{CHROMIUM} is missing and could not be installed ({why}); "
                "run `sudo apt-get install -y chromium` or set QUIZRT_CHROMIUM"
            )
    return CHROMIUM


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with web/node_modules (socket.io-client, playwright-core) in place."""
    if not shutil.which("node") or not shutil.which("npm"):
        why = apt_install("nodejs", "npm")
        if not shutil.which("node") or not shutil.which("npm"):
            pytest.fail(
                f"node/npm are missing and could not be installed ({why}); "
                "run `sudo apt-get install -y nodejs npm`"
            )
    # Usually a no-op (./dev test built it); installs playwright-core after a lock change.
    r = subprocess.run(["sh", str(ROOT / "web" / "build.sh")], capture_output=True, text=True)
    assert r.returncode == 0, f"web/build.sh failed:\n{r.stdout}\n{r.stderr}"
    return shutil.which("node") or "node"
