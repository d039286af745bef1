"""nginx as gateway: rate limits, JSON errors, routing, socket.io stickiness, list cache.

Rate limits are per client address, and everything here runs on 127.0.0.1. So
each test that may trip a limit sends from a loopback address of its own
(127.0.20.N; Linux routes the whole 127/8 to lo): nginx counts those requests
in a bucket no other test uses, and nothing has to wait for a refill.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import websocket

from tests.support.api import unique

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it empties rate-limit buckets with bursts of hundreds of sockets, timed.
pytestmark = pytest.mark.alone

_addresses = itertools.count(1)


def new_address() -> str:
    """A loopback address no other test in this run sends from."""
    return f"127.0.20.{next(_addresses) % 250 + 1}"


def client_from(base_url: str, address: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address or new_address())
    return httpx.Client(base_url=base_url, transport=transport, timeout=20)


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with client_from(base_url) as c:
        yield c


def assert_json_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["status_code"] == status and body["detail"]
    return body


def zone_limit(stack_dir: Path, zone: str) -> tuple[float, int]:
    """(requests per second, burst) of ``zone`` in the stack's rendered nginx.conf."""
    conf = (stack_dir / "nginx" / "nginx.conf").read_text()
    rate = re.search(rf"zone={zone}:\S+ rate=(\d+)r/s", conf)
    burst = re.search(rf"zone={zone} burst=(\d+)", conf)
    assert rate and burst, f"no limit_req zone {zone} in nginx.conf"
    return float(rate.group(1)), int(burst.group(1))


class RawAnswer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


class Blast(NamedTuple):
    answers: list[RawAnswer]
    sending: float  # seconds from the first connect to the last request sent
    elapsed: float  # seconds from the first connect to the last answer read


def blast(base_url: str, address: str, path: str, count: int) -> Blast:
    """POST ``{}`` ``count`` times from ``address``, all sent before any answer is read.

    nginx counts a request against its limit when the request arrives, so the
    rate nginx sees does not depend on how fast the services answer (a client
    that waits for each answer may never outrun 300 r/s on a busy machine).
    """
    host, port = base_url.split("//", 1)[1].split(":")
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}"
    ).encode()
    start = time.monotonic()
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            sockets.append(s)
            s.bind((address, 0))
            s.connect((host, int(port)))
            s.sendall(request)
        sending = time.monotonic() - start
        answers = []
        for s in sockets:
            s.settimeout(30)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
            head, _, body = raw.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
            answers.append(RawAnswer(int(status_line.split()[1]), headers, body))
    finally:
        for s in sockets:
            s.close()
    return Blast(answers, sending, time.monotonic() - start)


def outrun(base_url: str, path: str, rate: float, burst: int) -> Blast:
    """A blast from a fresh address that nginx limits: on a machine too busy to send
    faster than the bucket refills, again with more requests (never a skip)."""
    count = 2 * burst + 50
    for _ in range(4):
        b = blast(base_url, new_address(), path, count)
        if any(a.status == 429 for a in b.answers):
            return b
        # No refusal is fine only while the bucket could have let every request through.
        assert count <= burst + 1 + rate * b.sending, (
            f"{count} requests sent in {b.sending:.2f}s and no 429"
        )
        count = min(count * 2, 8000)
    raise AssertionError(f"could not send faster than {rate} r/s (last: {b.sending:.1f}s)")


# --------------------------------------------------------------------------- rate limits


@pytest.mark.stack
@pytest.mark.parametrize(
    ("zone", "path"),
    [
        ("login", "/api/iam/token"),
        ("login", "/api/iam/users"),
        ("guests", "/api/iam/guests"),
        ("answers", "/api/quiz/sessions/00000000-no-such-session/answers"),
    ],
    ids=["login", "register", "guests", "answers"],
)
def test_rate_limit_is_429_json_with_retry_after(
    base_url: str, stack_dir: Path, zone: str, path: str
) -> None:
    rate, burst = zone_limit(stack_dir, zone)
    answers, _, elapsed = outrun(base_url, path, rate, burst)
    limited = [a for a in answers if a.status == 429]
    passed = len(answers) - len(limited)
    # nginx lets the burst through at once, then `rate` per second (at most).
    assert burst <= passed <= burst + 1 + rate * elapsed + 2, (passed, elapsed)
    first = limited[0]
    assert first.headers["content-type"].startswith("application/json")
    assert json.loads(first.body)["status_code"] == 429
    assert int(first.headers["retry-after"]) >= 1
    # Per client address: another address is not limited at the same moment.
    with client_from(base_url) as other:
        assert other.post(path, json={}).status_code != 429


@pytest.mark.stack
def test_login_and_register_share_one_bucket(base_url: str, stack_dir: Path) -> None:
    rate, burst = zone_limit(stack_dir, "login")
    for _ in range(3):
        address = new_address()
        start = time.monotonic()
        logins = blast(base_url, address, "/api/iam/token", count=burst + 1)
        # the burst passes (invalid body: 422), unless the bucket refilled meanwhile
        assert all(a.status == 422 for a in logins.answers), [a.status for a in logins.answers]
        # The bucket is full now; registration from the same address is refused too.
        answers = blast(base_url, address, "/api/iam/users", count=burst).answers
        if any(a.status == 429 for a in answers):
            return
        # A separate bucket would pass all of these; the shared one only if seconds
        # passed (a machine too busy to send quickly): then again from a fresh address.
        took = time.monotonic() - start
        assert took >= burst / rate, f"{2 * burst + 1} requests in {took:.2f}s, no 429"
    raise AssertionError(f"could not send {2 * burst + 1} requests within {burst / rate:.0f}s")


# --------------------------------------------------------------------------- JSON errors


@pytest.mark.stack
@pytest.mark.parametrize(
    "path", ["/api/nothing", "/api/iam/nothing", "/api/quiz/nothing/here", "/api/leaderboard/x/y"]
)
def test_unknown_api_paths_are_json_404(client: httpx.Client, path: str) -> None:
    assert_json_error(client.get(path), 404)


@pytest.mark.stack
def test_wrong_method_is_json_405(client: httpx.Client) -> None:
    assert_json_error(client.delete("/api/iam/jwks"), 405)


@pytest.mark.stack
@pytest.mark.parametrize(
    ("path", "size"),
    [
        ("/api/iam/guests", 300_000),
        ("/api/quiz/quizzes", 300_000),
        ("/api/quiz/sessions/abc/answers", 5_000),  # answers are tiny: 4 KiB cap
        ("/api/leaderboard/sessions/abc/top", 300_000),
    ],
)
def test_oversized_bodies_are_json_413(client: httpx.Client, path: str, size: int) -> None:
    body = json.dumps({"pad": "x" * size}).encode()
    r = client.post(
        path,
        content=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
    )
    assert_json_error(r, 413)


@pytest.mark.stack
def test_quiz_list_without_a_token_is_json_401(client: httpx.Client) -> None:
    assert_json_error(client.get("/api/quiz/quizzes"), 401)


@contextlib.contextmanager
def own_nginx(conf: Path, port: int) -> Iterator[None]:
    """A second nginx running ``conf`` (rendered from the stack's template), listening
    on ``port``, while in the block."""
    from infra.stack import nginx_binary, port_open

    proc = subprocess.Popen(
        [nginx_binary(), "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            assert proc.poll() is None, "nginx exited"
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def test_dead_upstreams_answer_json_502_with_retry_after(tmp_path: Path) -> None:
    """A second nginx from the same template, whose upstream ports have no process."""
    from infra.stack import Layout, render_nginx

    lay = Layout.test(tmp_path)
    (tmp_path / "logs").mkdir()
    conf = render_nginx(lay)
    with own_nginx(conf, lay.http_port), httpx.Client(base_url=lay.base_url, timeout=10) as c:
        for path in ("/api/iam/jwks", "/api/quiz/health", "/api/leaderboard/health"):
            r = c.get(path)
            assert_json_error(r, 502)
            assert r.headers["retry-after"] == "1"
        r = c.get("/socket.io/?EIO=4&transport=polling")
        assert_json_error(r, 502)


# --------------------------------------------------------------------------- routing


@pytest.mark.stack
@pytest.mark.parametrize("service", ["iam", "quiz", "leaderboard"])
def test_each_api_prefix_reaches_its_service(client: httpx.Client, service: str) -> None:
    r = client.get(f"/api/{service}/schema/openapi.json")
    assert r.status_code == 200, r.text
    assert r.json()["info"]["title"] == f"quizrt {service} service"


def _polling_handshake(c: httpx.Client, sticky: str | None = None) -> str:
    params = {"EIO": "4", "transport": "polling", **({"sticky": sticky} if sticky else {})}
    r = c.get("/socket.io/", params=params)
    assert r.status_code == 200, r.text
    assert r.text.startswith("0"), r.text
    return json.loads(r.text[1:])["sid"]


def _poll_again(c: httpx.Client, sid: str, sticky: str | None = None) -> httpx.Response:
    """A second long-polling request of an open session: only its own process knows ``sid``."""
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    if sticky:
        params["sticky"] = sticky
    # Send a ping; "ok" means the process that opened the session got it.
    return c.post("/socket.io/", params=params, content=b"3")


@pytest.mark.stack
def test_socketio_long_polling_sticks_to_one_process_per_client_address(base_url: str) -> None:
    # Several addresses spread over the socket.io processes; each must stay on its own.
    for _ in range(8):
        with client_from(base_url) as c:
            sid = _polling_handshake(c)
            for _ in range(3):
                r = _poll_again(c, sid)
                assert r.status_code == 200 and r.text.lower() == "ok", r.text


@pytest.mark.stack
def test_socketio_sticky_parameter_overrides_the_address(base_url: str) -> None:
    for _ in range(6):
        key = uuid.uuid4().hex
        with client_from(base_url) as first, client_from(base_url) as second:
            sid = _polling_handshake(first, sticky=key)
            # Another address, same sticky key: the same process.
            r = _poll_again(second, sid, sticky=key)
            assert r.status_code == 200 and r.text.lower() == "ok", r.text


def _websocket_from(url: str, address: str) -> websocket.WebSocket:
    """A websocket to ``url`` whose TCP connection comes from ``address``."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    sock = socket.socket()
    sock.settimeout(5)
    sock.bind((address, 0))
    sock.connect((host, int(port)))
    return websocket.create_connection(url, timeout=5, socket=sock)


@pytest.mark.stack
def test_socketio_websocket_transport(base_url: str) -> None:
    ws = websocket.create_connection(
        f"{base_url.replace('http://', 'ws://')}/socket.io/?EIO=4&transport=websocket", timeout=5
    )
    try:
        opened = ws.recv()
        assert isinstance(opened, str), opened
        assert opened.startswith("0") and "sid" in json.loads(opened[1:])
    finally:
        ws.close()


@pytest.mark.stack
@pytest.mark.parametrize("by", ["address", "sticky-key"])
def test_socketio_polling_session_upgrades_to_websocket(base_url: str, by: str) -> None:
    """The upgrade request must reach the process that holds the polling session."""
    ws_base = base_url.replace("http://", "ws://")
    for _ in range(4):
        address = new_address()
        key = uuid.uuid4().hex if by == "sticky-key" else None
        with client_from(base_url, address) as c:
            sid = _polling_handshake(c, sticky=key)
        url = f"{ws_base}/socket.io/?EIO=4&transport=websocket&sid={sid}"
        if key:
            # From yet another address: only the key leads to the right process.
            ws = _websocket_from(f"{url}&sticky={key}", new_address())
        else:
            ws = _websocket_from(url, address)
        try:
            ws.send("2probe")
            assert ws.recv() == "3probe"
        finally:
            ws.close()


# --------------------------------------------------------------------------- caching


@pytest.mark.stack
def test_public_quiz_list_is_cached_briefly(client: httpx.Client) -> None:
    username = unique("host")
    password = "correct horse 9"
    assert (
        client.post("/api/iam/users", json={"username": username, "password": password}).status_code
        == 201
    )
    token = client.post("/api/iam/token", json={"username": username, "password": password}).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    first = client.get("/api/quiz/quizzes", headers=auth)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache-status"] in ("MISS", "EXPIRED", "HIT", "UPDATING")
    second = client.get("/api/quiz/quizzes", headers=auth)
    assert second.status_code == 200
    assert second.headers["x-cache-status"] == "HIT"
    assert second.json() == first.json()
    # Writes are never served from (or stored in) the cache.
    post = client.post("/api/quiz/quizzes", headers=auth, json={})
    assert post.status_code == 422, post.text
    assert post.headers.get("x-cache-status") in (None, "BYPASS")


@pytest.mark.stack
@pytest.mark.parametrize(
    "path", ["/api/iam/jwks", "/api/leaderboard/sessions/abc/top", "/api/quiz/health"]
)
def test_other_responses_are_not_cached(client: httpx.Client, path: str) -> None:
    for _ in range(2):
        r = client.get(path, headers={"Authorization": "Bearer x"})
        assert "x-cache-status" not in r.headers


# --------------------------------------------------------------------------- docs


@pytest.mark.stack
def test_generated_docs_are_served_at_docs(client: httpx.Client) -> None:
    page = client.get("/docs/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="openapi-iam.json"' in page.text
    r = client.get("/docs/openapi-iam.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "/api/iam/token" in r.json()["paths"]
    assert client.get("/docs/events.json").json()["asyncapi"].startswith("3.")
