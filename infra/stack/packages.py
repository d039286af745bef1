"""The server binaries: found on PATH, installed with apt-get as root when missing,
and Kafka's jars fetched once from Maven Central."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from infra.stack.util import CACHE, ROOT, die, say

KAFKA_VERSION = "4.1.1"


def need_binary(binary: str, package: str, candidates: list[str] | None = None) -> str:
    """Path of a server binary; installs its Debian package as root when missing."""
    for c in [*(candidates or []), binary]:
        path = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK) else None)
        if path:
            return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {package} with apt-get (first run only)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL
        )
        r = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        if r.returncode == 0:
            return need_binary(binary, package, candidates)
    die(f"{binary} not found: install it with `sudo apt-get install {package}`")


def pg_bin(name: str) -> str:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    cands = [str(v / name) for v in versions]
    if not cands:
        need_binary("pg_ctl", "postgresql", [])
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        cands = [str(v / name) for v in versions]
    return need_binary(name, "postgresql", cands)


def nginx_binary() -> str:
    return need_binary("nginx", "nginx-light", ["/usr/sbin/nginx"])


def kafka_libs() -> Path:
    """The broker's jars, copied once from Maven Central into the user cache."""
    libs = CACHE / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / ".complete").exists():
        return libs
    if not shutil.which("mvn"):
        die("Maven (mvn) is needed once to fetch Apache Kafka: `sudo apt-get install maven`")
    say(f"fetching Apache Kafka {KAFKA_VERSION} from Maven Central into {libs} (first run only)")
    r = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(ROOT / "infra/kafka/pom.xml"),
            "package",
            f"-Dkafka.version={KAFKA_VERSION}",
            f"-Dlibs.dir={libs}",
        ],
        cwd=ROOT,
    )
    if r.returncode != 0:
        die("mvn could not fetch the Kafka broker")
    (libs / ".complete").touch()
    return libs
