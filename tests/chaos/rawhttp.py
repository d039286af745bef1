"""A very cheap HTTP/1.1 load source: pre-encoded requests on raw asyncio sockets.

httpx spends milliseconds of CPU per request; on a busy 2-core machine that makes
the client, not the server, the bottleneck of a burst. Here a request costs a
connect, one write and one read, so a burst really arrives at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int  # 0 when the connection failed
    seconds: float
    headers: dict[str, str]
    body: bytes


def encode_request(method: str, url: str, body: dict | None, headers: dict[str, str]) -> bytes:
    """One request with ``Connection: close`` (one request per connection)."""
    u = urlsplit(url)
    data = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {u.path or '/'}{'?' + u.query if u.query else ''} HTTP/1.1"]
    lines.append(f"Host: {u.netloc}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _one(host: str, port: int, raw: bytes, timeout: float) -> Reply:
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            data = await reader.read()
            writer.close()
    except (OSError, TimeoutError):
        return Reply(0, time.monotonic() - t0, {}, b"")
    took = time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Reply(0, took, {}, data)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return Reply(status, took, headers, body)


async def burst(url: str, raw: bytes, n: int, timeout: float = 20) -> list[Reply]:
    """Send ``raw`` ``n`` times at once to the server of ``url``."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    return await asyncio.gather(*[_one(host, port, raw, timeout) for _ in range(n)])
