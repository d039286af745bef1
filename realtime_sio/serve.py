"""The socket tier's server: uvicorn as measured (see README.md), on a TCP port and,
when ``--uds`` names one, also on a Unix socket in the same process.

    python -m realtime_sio.serve --host 127.0.0.1 --port 8000 [--uds PATH]

The local stack's nginx reaches each socket.io process through its Unix socket:
every room event crosses the nginx hop once per recipient, and a Unix socket write
costs the sender about half of a loopback TCP one (no TCP stack on either side;
docs/benchmarks.md has the figures). The TCP port stays for everything else (health
checks, tests that talk to one process, the Docker demo, where nginx runs elsewhere).

The options: the sans-io websockets implementation with the raw frame writer of
``uvicorn_ws``, no per-message deflate (it compresses once per recipient), no
websocket-level pings (engine.io pings), uvloop, h11 (httptools is not among the
project's packages).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import stat
from pathlib import Path

import uvicorn

APP = "realtime_sio.app:app"
BACKLOG = 4096


def config(app: str = APP, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="h11",
        ws="realtime_sio.uvicorn_ws:RawFramesProtocol",
        ws_per_message_deflate=False,
        ws_ping_interval=0.0,
        ws_max_size=1 << 20,
        access_log=False,
        log_level="warning",
        backlog=BACKLOG,
        timeout_keep_alive=30,
        # A stop (or restart) does not wait for pending long-polls (up to a ping interval).
        timeout_graceful_shutdown=3,
    )


def unix_socket(path: str) -> socket.socket:
    """A Unix socket bound at ``path``, for nginx only (0600), replacing a stale one
    from an earlier run (uvicorn's own ``bind_socket`` would refuse it). uvicorn
    listens on it, with the backlog, as on the TCP socket."""
    p = Path(path)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(p.lstat().st_mode):
            p.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server, which also removes its Unix socket's file when it stops
    (uvicorn re-raises a captured SIGTERM once it has shut down, so code after
    ``run`` does not run on a stop)."""

    def __init__(self, config: uvicorn.Config, uds: str = ""):
        super().__init__(config)
        self.uds = uds

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            if self.uds:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.uds)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m realtime_sio.serve", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--uds", default="", help="also listen on this Unix socket")
    ap.add_argument("--app", default=APP)
    a = ap.parse_args(argv)
    cfg = config(a.app, a.host, a.port)
    sockets = [cfg.bind_socket()]  # uvicorn's own TCP bind
    if a.uds:
        sockets.append(unix_socket(a.uds))
    Server(cfg, a.uds).run(sockets=sockets)


if __name__ == "__main__":
    main()
