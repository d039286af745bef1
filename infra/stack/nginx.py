"""The gateway's configuration: infra/nginx/nginx.conf.template filled in for a
local stack (``render_nginx``) or for infra/compose.yaml (``compose_nginx_text``)."""

from __future__ import annotations

import os
from pathlib import Path

from infra.stack.layout import Layout
from infra.stack.util import ROOT

# Per client address: (rate, burst). A classroom behind one NAT address must fit.
RATE_LIMITS = {
    "LOGIN": ("5r/s", 20),
    "GUESTS": ("50r/s", 200),
    "JOIN": ("5r/s", 200),  # join codes: a whole class joins at once, guessing is slow
    "ANSWERS": ("300r/s", 600),
    "API": ("500r/s", 1000),
}
COMPOSE_NGINX = ROOT / "infra" / "nginx" / "nginx.compose.conf"


def nginx_text(values: dict[str, str]) -> str:
    """infra/nginx/nginx.conf.template with its {{NAME}} placeholders filled in."""
    values = dict(values)
    for name, (rate, burst) in RATE_LIMITS.items():
        env = os.environ.get(f"QUIZ_RATE_{name}", "")
        if env:  # e.g. QUIZ_RATE_ANSWERS=5000r/s:10000
            rate, _, b = env.partition(":")
            burst = int(b or burst)
        values.setdefault(f"RATE_{name}", rate)
        values.setdefault(f"BURST_{name}", str(burst))
    from services.iam.gateway import POLICY, Policy

    values.setdefault("GATEWAY_CLASSES", Policy(POLICY).nginx_classes())
    text = (ROOT / "infra/nginx/nginx.conf.template").read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    return text


def _pool(servers: list[str]) -> str:
    return "\n".join(f"        server {s} max_fails=1 fail_timeout=2s;" for s in servers)


def render_nginx(lay: Layout) -> Path:
    """Write the nginx config of this layout into the run folder."""
    ndir = lay.run_dir / "nginx"
    for sub in ("", "cache", "tmp"):
        (ndir / sub).mkdir(parents=True, exist_ok=True)

    def pool(ports: list[int]) -> str:
        return _pool([f"127.0.0.1:{p}" for p in ports])

    conf = ndir / "nginx.conf"
    conf.write_text(
        nginx_text(
            {
                "USER": "user root;" if os.geteuid() == 0 else "",
                "PREFIX": str(ndir),
                "LOGS": str(lay.run_dir / "logs"),
                "HTTP_PORT": str(lay.http_port),
                "LISTEN_HOST": "127.0.0.1:",
                "IAM_SERVERS": pool(lay.iam_ports),
                "QUIZ_SERVERS": pool(lay.quiz_ports),
                "LEADERBOARD_SERVERS": pool(lay.leaderboard_ports),
                "SIO_SERVERS": (
                    _pool([f"unix:{p}" for p in lay.sio_sockets])
                    if lay.sio_sockets
                    else pool(lay.sio_ports)
                ),
                "WEB_ROOT": str(ROOT / "web" / "dist"),
                "DOCS_ROOT": str(ROOT / "docs"),
                "NGINX_ROOT": str(ROOT / "infra" / "nginx"),
            }
        )
    )
    return conf


def compose_nginx_text() -> str:
    """The same gateway for infra/compose.yaml: pools name Compose services, which
    resolve to every replica of a `--scale`d service."""
    defaults = {f"RATE_{n}": r for n, (r, _) in RATE_LIMITS.items()}
    defaults |= {f"BURST_{n}": str(b) for n, (_, b) in RATE_LIMITS.items()}
    return nginx_text(
        {
            **defaults,
            "USER": "",
            "PREFIX": "/var/cache/nginx",
            "LOGS": "/var/log/nginx",
            "HTTP_PORT": "8080",
            "LISTEN_HOST": "",
            "IAM_SERVERS": _pool(["iam:8000"]),
            "QUIZ_SERVERS": _pool(["quiz:8000"]),
            "LEADERBOARD_SERVERS": _pool(["leaderboard:8000"]),
            "SIO_SERVERS": _pool(["sio:8000"]),
            "WEB_ROOT": "/srv/web",
            "DOCS_ROOT": "/srv/docs",
            "NGINX_ROOT": "/etc/nginx/quizrt",
        }
    )
