"""nginx rows of the outside security probe, each through nginx on the real stack.

- Routes match with or without a trailing slash before any limit: the slash
  forms of login, registration, guests, answers and join hit the same zones and
  body caps (and still reach their route).
- nginx's own errors are JSON ``{status_code, detail}`` with the right status:
  malformed request lines, oversized headers, unknown transfer codings, HTTP/2.0
  request lines, over-long URIs, directories, hidden files.
- Join codes cannot be guessed fast: a per-address zone on the join route (429
  JSON with Retry-After), with a burst a classroom behind one NAT fits in.
- Pages carry a Content-Security-Policy of this origin only and refuse framing;
  redirects never echo the client's Host; ``/.version`` is not served (Chromium
  under that policy: tests/test_gateway_csp.py).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Api
from tests.test_gateway import assert_json_error, client_from, new_address, outrun, zone_limit

# ./dev test runs this module in its 'alone' phase (infra/stack/cli.py, PHASES):
# it empties rate-limit buckets with bursts of hundreds of sockets, timed.
pytestmark = [pytest.mark.stack, pytest.mark.alone]

ANSWERS = "/api/quiz/sessions/00000000-no-such-session/answers"


# --------------------------------------------------------------------------- trailing slashes


@pytest.mark.parametrize(
    ("zone", "path"),
    [
        ("login", "/api/iam/token/"),
        ("login", "/api/iam/users/"),
        ("guests", "/api/iam/guests/"),
        ("answers", ANSWERS + "/"),
        ("answers", ANSWERS + "//"),
        ("join", "/api/quiz/sessions/join/"),
    ],
    ids=["login", "register", "guests", "answers", "answers-two-slashes", "join"],
)
def test_a_trailing_slash_does_not_escape_the_limit(
    base_url: str, stack_dir: Path, zone: str, path: str
) -> None:
    rate, burst = zone_limit(stack_dir, zone)
    answers, _, elapsed = outrun(base_url, path, rate, burst)
    limited = [a for a in answers if a.status == 429]
    passed = len(answers) - len(limited)
    assert limited, f"{path}: {len(answers)} requests in {elapsed:.2f}s and no 429"
    assert passed <= burst + 1 + rate * elapsed + 2, (passed, elapsed)
    assert json.loads(limited[0].body)["status_code"] == 429
    assert int(limited[0].headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("path", "expect"),
    [
        ("/api/iam/token/", 422),  # the login route, given an empty body
        ("/api/iam/guests/", 422),
        ("/api/iam/jwks/", 200),
    ],
)
def test_slash_forms_still_reach_their_route(path: str, expect: int, base_url: str) -> None:
    with client_from(base_url) as c:
        r = c.request(
            "GET" if "jwks" in path else "POST", path, json=None if "jwks" in path else {}
        )
        assert r.status_code == expect, r.text


@pytest.mark.parametrize("path", [ANSWERS + "/", ANSWERS + "//", ANSWERS + "/./"])
def test_the_answer_body_cap_holds_with_a_slash(path: str, base_url: str) -> None:
    with client_from(base_url) as c:
        r = c.post(
            path,
            content=json.dumps({"pad": "x" * 5_000}).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        )
        assert_json_error(r, 413)


# --------------------------------------------------------------------------- JSON errors


def _raw(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base_url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
            if b"\r\n\r\n" in raw:
                head, _, body = raw.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, body


BIG_HEADER = "X-Big: " + "a" * 9000
HOSTILE_REQUESTS = {
    "NUL in the path": (b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "dot segments above the root": (
        b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    ),
    "raw dot segments": (b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "headers over 8 KiB": (f"GET / HTTP/1.1\r\nHost: x\r\n{BIG_HEADER}\r\n\r\n".encode(), 400),
    "unknown transfer coding": (
        b"POST /api/quiz/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\nx",
        501,
    ),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "URI over the buffer": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "a refused request with a body over the cap": (
        b"POST /socket.io/?token=x HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n",
        400,
    ),
    "the assets directory": (b"GET /assets/ HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    "a hidden file": (b"GET /.version HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    "a hidden file under assets": (b"GET /assets/.x HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    "the gateway's verdict from outside": (
        b"GET /api/iam/gateway/verdict HTTP/1.1\r\nHost: x\r\n\r\n",
        404,
    ),
    "the gateway's internal error page": (b"GET /_gateway/error HTTP/1.1\r\nHost: x\r\n\r\n", 404),
}


@pytest.mark.parametrize("name", list(HOSTILE_REQUESTS))
def test_nginx_answers_its_own_errors_in_json(base_url: str, name: str) -> None:
    request, status = HOSTILE_REQUESTS[name]
    got, headers, body = _raw(base_url, request)
    assert got == status, (name, got, body[:200])
    assert headers["content-type"].startswith("application/json"), (name, headers)
    parsed = json.loads(body)
    assert parsed["status_code"] == status and parsed["detail"], parsed


def test_the_hidden_version_file_exists_but_is_not_served() -> None:
    assert (ROOT / "web" / "dist" / ".version").exists()


# --------------------------------------------------------------------------- join codes


def test_join_code_guessing_is_limited_per_address(
    base_url: str, stack_dir: Path, api: Api
) -> None:
    rate, burst = zone_limit(stack_dir, "join")
    assert burst >= 100, "a classroom behind one NAT address must fit in the burst"
    assert rate <= 10, "guessing a 6-digit code must take days from one address"
    answers, _, elapsed = outrun(base_url, "/api/quiz/sessions/join", rate, burst)
    limited = [a for a in answers if a.status == 429]
    assert limited, f"{len(answers)} join attempts in {elapsed:.2f}s and no 429"
    # Those under the limit went on to the gateway's check (no token: 401).
    assert {a.status for a in answers} == {401, 429}, {a.status for a in answers}
    assert burst <= len(answers) - len(limited) <= burst + 1 + rate * elapsed + 2
    assert int(limited[0].headers["retry-after"]) >= 1
    assert json.loads(limited[0].body)["status_code"] == 429


def test_a_classroom_behind_one_address_joins_at_once(base_url: str, api: Api) -> None:
    host = api.host()
    quiz = {
        "title": "nat class",
        "questions": [{"text": "q?", "choices": ["a", "b"], "answer": 0, "time_limit_s": 5}],
    }
    with client_from(base_url) as c:
        r = c.post("/api/quiz/quizzes", json=quiz, headers=api.auth(host))
        assert r.status_code == 201, r.text
        r = c.post(
            "/api/quiz/sessions",
            json={"quiz_id": r.json()["id"], "mode": "live"},
            headers=api.auth(host),
        )
        assert r.status_code == 201, r.text
        code = r.json()["code"]
    players = [api.guest() for _ in range(40)]
    address = new_address()
    with client_from(base_url, address) as c:
        statuses = [
            c.post("/api/quiz/sessions/join", json={"code": code}, headers=api.auth(p)).status_code
            for p in players
        ]
    assert statuses == [200] * len(players), statuses


# --------------------------------------------------------------------------- page headers


def _csp(r: httpx.Response) -> dict[str, str]:
    policy = r.headers["content-security-policy"]
    return {d.split()[0]: d.strip() for d in policy.split(";") if d.strip()}


@pytest.mark.parametrize(
    "path", ["/", "/host", "/join/123456", "/docs/", "/api/quiz/schema", "/api/nothing"]
)
def test_pages_carry_a_csp_of_this_origin_and_refuse_framing(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    csp = _csp(r)
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "object-src 'none'" in csp.values() or csp["default-src"] == "default-src 'none'"
    for directive in csp.values():
        assert "http" not in directive and "*" not in directive, directive
    if path in ("/", "/host", "/join/123456"):  # the web client: no inline script or style
        assert csp["script-src"] == "script-src 'self'"
        assert csp["style-src"] == "style-src 'self'"
        assert r.headers["cache-control"] == "no-cache"


def test_assets_are_cached_for_a_year(http: httpx.Client) -> None:
    version = (ROOT / "web" / "dist" / ".version").read_text().strip()
    r = http.get(f"/assets/{version}/app.js")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "content-security-policy" in r.headers


def test_redirects_never_use_the_clients_host(http: httpx.Client) -> None:
    r = http.get("/docs/screenshots", headers={"Host": "evil.example"})
    assert r.status_code == 301, r.text
    assert r.headers["location"] == "/docs/screenshots/"
