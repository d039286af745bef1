"""The gateway as the central point of authorization (nginx auth_request -> IAM).

In-process: the route policy in ``services/iam/gateway.py`` covers every route of
the quiz and leaderboard services and nothing else, and a change in that one
table changes the verdict. Through nginx on the real stack: refused tokens
(forged, ``alg: none``, expired, ...) and wrong roles never reach a service (the
stack's ``logs/nginx.upstream.log`` holds one line per request a service answered
with an error, as it would a token it refused); a refusal stays a refusal after
the verdict cache, and a cached pass never outlives the token's ``exp``; caller
headers forged by a client never reach a service (a second nginx from the same
template, with an echo server in place of the services and the stack's real
IAM); public routes stay public; the services still verify tokens themselves
when reached without the gateway.
"""

from __future__ import annotations

import dataclasses
import http.server
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from infra.stack import read_layout
from services.common.auth import TokenVerifier
from services.iam.gateway import (
    PASS_TTL_S,
    POLICY,
    Access,
    Gatekeeper,
    Policy,
    Route,
)
from services.iam.keys import KeyRing, load_from_dir
from tests.conftest import Api
from tests.support.tokens import claims, hostile_tokens, keyring, sign
from tests.test_gateway import own_nginx

# ./dev test runs this module in its 'last' phase (infra/stack/cli.py, PHASES):
# it scans nginx's error log of the whole run, and times a pass's expiry.
pytestmark = pytest.mark.last

# --------------------------------------------------------------------------- the table


def _app_routes() -> set[tuple[str, str]]:
    from services.leaderboard.app import app as leaderboard_app
    from services.quiz.app import app as quiz_app

    found: set[tuple[str, str]] = set()
    for app in (quiz_app, leaderboard_app):
        for route in app.routes:
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            for method in route.methods - {"OPTIONS", "HEAD"}:
                found.add((str(method), path))
    return found


def test_every_service_route_has_exactly_one_rule_and_every_rule_a_route() -> None:
    policy = Policy(POLICY)
    routes = _app_routes()
    for method, path in routes:
        concrete = re.sub(r"\{\w+\}", "x1", path)
        policy.access(method, concrete)  # raises NoRoute when the table misses it
    # No rule for a route that does not exist (docs rules cover Litestar's schema pages).
    for rule in POLICY:
        if rule.path.endswith("/**") or rule.method == "HEAD":
            continue
        assert (rule.method, rule.path) in routes, f"no service route for {rule}"


def _ring_and_gatekeeper(policy: Policy, keys: Path) -> tuple[KeyRing, Gatekeeper]:
    ring = load_from_dir(keys)
    verifier = TokenVerifier(jwks_url="http://127.0.0.1:9/unused")
    verifier.load_jwks(ring.jwks())
    return ring, Gatekeeper(policy, verifier)


async def test_verdicts_follow_the_table(tmp_path: Path) -> None:
    ring, gate = _ring_and_gatekeeper(Policy(POLICY), tmp_path)
    player = "Bearer " + sign(ring, claims("u-1", nickname="Zoë 🦊"))
    host = "Bearer " + sign(ring, claims("u-2", role="host"))
    answers = "/api/quiz/sessions/s1/answers"

    v = await gate.decide("POST", answers, player)
    assert v.status == 200
    assert v.headers["X-Auth-User-Id"] == "u-1" and v.headers["X-Auth-Role"] == "player"
    assert unquote(v.headers["X-Auth-Nickname"]) == "Zoë 🦊"
    assert v.headers["X-Auth-Nickname"].isascii()
    # Cached at most PASS_TTL_S, and strictly before the token's exp (300 s here).
    assert 0 < int(v.headers["X-Accel-Expires"]) <= min(PASS_TTL_S, 300 - 1)

    v = await gate.decide("POST", "/api/quiz/sessions/s1/advance", player)
    assert (v.status, v.headers["X-Gateway-Detail"]) == (403, "Only hosts may do this")
    assert (await gate.decide("POST", "/api/quiz/sessions/s1/advance", host)).status == 200

    v = await gate.decide("POST", answers, "")
    assert (v.status, v.headers["X-Gateway-Detail"]) == (401, "Missing bearer token")
    assert (await gate.decide("POST", answers, "Basic abc")).status == 401
    expired = sign(ring, claims("u-1", iat=int(time.time()) - 900, exp=int(time.time()) - 5))
    v = await gate.decide("POST", answers, f"Bearer {expired}")
    assert (v.status, v.headers["X-Gateway-Detail"]) == (401, "token expired")

    # Public routes need nothing; unknown routes and methods are refused as 404/405.
    assert (await gate.decide("GET", "/api/quiz/health", "")).status == 200
    assert (await gate.decide("GET", "/api/quiz/schema/openapi.json", "")).status == 200
    v = await gate.decide("GET", "/api/quiz/nothing", player)
    assert (v.status, v.headers["X-Gateway-Status"]) == (403, "404")
    v = await gate.decide("DELETE", answers, player)
    assert (v.status, v.headers["X-Gateway-Status"]) == (403, "405")
    assert (await gate.decide("GET", "", player)).headers["X-Gateway-Status"] == "404"


async def test_a_short_lived_token_is_cached_strictly_before_its_exp(tmp_path: Path) -> None:
    ring, gate = _ring_and_gatekeeper(Policy(POLICY), tmp_path)
    now = time.time()
    for left in (0.5, 1.0, 1.9, 2.0, 7.3):
        token = sign(ring, claims("u-1", exp=int(now + left)))
        v = await gate.decide("GET", "/api/quiz/sessions/s/question", f"Bearer {token}")
        if v.status != 200:  # already expired at whole seconds
            continue
        ttl = int(v.headers["X-Accel-Expires"])
        # nginx keeps an entry until the end of second (now + ttl): before exp.
        assert int(time.time()) + ttl < int(now + left), (left, ttl)


async def test_a_policy_change_in_the_one_table_changes_the_verdict(tmp_path: Path) -> None:
    stricter = tuple(
        dataclasses.replace(r, access=Access.HOST) if r.path.endswith("/answers") else r
        for r in POLICY
    )
    ring, gate = _ring_and_gatekeeper(Policy(stricter), tmp_path)
    player = "Bearer " + sign(ring, claims("u-1"))
    v = await gate.decide("POST", "/api/quiz/sessions/s1/answers", player)
    assert v.status == 403
    looser = (*POLICY, Route("GET", "/api/quiz/new-public-page", Access.PUBLIC))
    _, gate = _ring_and_gatekeeper(Policy(looser), tmp_path)
    assert (await gate.decide("GET", "/api/quiz/new-public-page", "")).status == 200


def test_the_gateway_template_holds_no_policy_of_its_own() -> None:
    """Roles and per-route rules live in IAM's table: nginx only asks."""
    from tests.conftest import ROOT

    text = (ROOT / "infra/nginx/nginx.conf.template").read_text()
    assert "auth_request /_gateway/auth;" in text
    assert not re.search(r"\b(host|player)\b.*role|role.*\b(host|player)\b", text)


# --------------------------------------------------------------------------- the stack


def _upstream_log(stack_dir: Path) -> str:
    path = stack_dir / "logs" / "nginx.upstream.log"
    return path.read_text() if path.exists() else ""


def _log_after_control(http: httpx.Client, token: dict, stack_dir: Path) -> tuple[str, str]:
    """(upstream log, control path) once a call that does reach a service is in it.

    The control goes after the calls under test, with a valid token, to a path the
    service answers itself (an unknown session); nginx flushes its log every second.
    """
    control = f"control-{uuid.uuid4().hex[:12]}"
    r = http.get(f"/api/leaderboard/sessions/{control}/top", headers=Api.auth(token))
    assert r.status_code == 404, r.text  # not a session id: the service's own answer
    deadline = time.monotonic() + 15
    while control not in (text := _upstream_log(stack_dir)):
        assert time.monotonic() < deadline, f"{control} never reached the upstream log"
        time.sleep(0.2)
    return text, control


def _assert_json_error(r: httpx.Response, status: int, detail: str | None = None) -> None:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["status_code"] == status and body["detail"], body
    if detail is not None:
        assert body["detail"] == detail, body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _guest_and_hostile_tokens(api: Api, stack_dir: Path) -> tuple[dict, dict[str, str]]:
    """A new guest, and the tokens every service must refuse made from its own."""
    player = api.guest()
    ring = keyring(stack_dir)
    return player, hostile_tokens(ring, player["access_token"], player["user"]["id"])


def _marker_calls(marker: str) -> list[tuple[str, str, dict | None]]:
    """Calls that need a caller, each on a path naming ``marker``."""
    return [
        ("POST", f"/api/quiz/sessions/{marker}/answers", {"question_id": "q", "choice": 0}),
        ("GET", f"/api/quiz/sessions/{marker}/question", None),
        ("GET", f"/api/leaderboard/sessions/{marker}/top", None),
    ]


@pytest.mark.stack
def test_refused_tokens_never_reach_a_service(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    player, hostile = _guest_and_hostile_tokens(api, stack_dir)
    tokens = {**hostile, "garbage": "not.a.token"}
    markers = {}
    for name, token in tokens.items():
        marker = f"refused-{uuid.uuid4().hex[:12]}"
        markers[marker] = name
        for method, path, body in _marker_calls(marker):
            r = http.request(method, path, json=body, headers=_bearer(token))
            _assert_json_error(r, 401)
            assert r.headers.get("www-authenticate", "").startswith("Bearer"), r.headers
    missing = f"refused-{uuid.uuid4().hex[:12]}"
    markers[missing] = "no Authorization header"
    for method, path, body in _marker_calls(missing):
        _assert_json_error(http.request(method, path, json=body), 401, "Missing bearer token")
    log, _ = _log_after_control(http, player, stack_dir)
    reached = [name for marker, name in markers.items() if marker in log]
    assert not reached, f"refused by the gateway, yet proxied to a service: {reached}"
    # Every verdict fits nginx's cache, the longest Authorization header included.
    errors = (stack_dir / "logs" / "nginx.error.log").read_text()
    assert "not enough for cache key" not in errors


@pytest.mark.stack
def test_wrong_role_is_refused_on_every_host_route_before_any_service(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    """Derived from IAM's table: every host-only rule refuses a player at the gateway."""
    player = api.guest()
    uid = player["user"]["id"]
    marker = f"role-{uuid.uuid4().hex[:12]}"
    host_rules = [r for r in POLICY if r.access is Access.HOST]
    assert len(host_rules) >= 5
    for rule in host_rules:
        path = re.sub(r"\{\w+\}", marker, rule.path)
        body: dict | None = {} if rule.method == "POST" else None
        r = http.request(rule.method, path, json=body, headers=api.auth(player))
        _assert_json_error(r, 403, "Only hosts may do this")
    log, control = _log_after_control(http, player, stack_dir)
    # The log names the caller nginx forwarded: only the control call is this player's.
    mine = [line for line in log.splitlines() if uid in line]
    assert len(mine) == 1 and control in mine[0], mine


@pytest.mark.stack
def test_a_refusal_stays_refused_after_the_cache(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    player, hostile = _guest_and_hostile_tokens(api, stack_dir)
    forged = hostile["forged signature"]
    path = f"/api/quiz/sessions/{uuid.uuid4()}/question"
    for _ in range(3):  # the second and third come from nginx's verdict cache
        _assert_json_error(http.get(path, headers=_bearer(forged)), 401)
    # A pass cached for one route is not a pass for another route.
    ok = http.get(path, headers=api.auth(player))
    _assert_json_error(ok, 404, "No such session")  # the service's own resource check
    for _ in range(2):
        r = http.post(path.replace("/question", "/advance"), headers=api.auth(player))
        _assert_json_error(r, 403, "Only hosts may do this")
    # The real token with one byte changed is another cache key, and refused.
    token = player["access_token"]
    r = http.get(path, headers=_bearer(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]))
    _assert_json_error(r, 401)


@pytest.mark.stack
def test_a_cached_pass_never_outlives_the_token(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    ring = keyring(stack_dir)
    player = api.guest()
    exp = int(time.time()) + 4
    token = sign(ring, claims(player["user"]["id"], exp=exp))
    marker = f"exp-{uuid.uuid4().hex[:12]}"
    path = f"/api/leaderboard/sessions/{marker}/top"
    while time.time() < exp - 0.5:  # passes (the service answers for itself) until exp
        r = http.get(path, headers=_bearer(token))
        assert r.status_code == 404, r.text
        time.sleep(0.25)
    while time.time() < exp + 0.05:
        time.sleep(0.05)
    after = f"after-{marker}"
    r = http.get(path.replace(marker, after), headers=_bearer(token))
    _assert_json_error(r, 401, "token expired")
    r = http.get(path, headers=_bearer(token))  # the path whose pass was cached
    _assert_json_error(r, 401, "token expired")
    log, _ = _log_after_control(http, player, stack_dir)
    assert after not in log
    last_pass = max(
        line.split()[0] for line in log.splitlines() if f"/{marker}/" in line
    )  # ISO time of the last request that reached the service, to the second
    assert last_pass < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(exp)), last_pass


@pytest.mark.stack
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/iam/guests", {"nickname": "public"}, 201),
        ("POST", "/api/iam/token", {}, 422),  # IAM's own answer: no credentials given
        ("POST", "/api/iam/token/refresh", {"refresh_token": "nope"}, 401),  # IAM's own
        ("GET", "/api/iam/jwks", None, 200),
        ("GET", "/api/iam/health", None, 200),
        ("GET", "/api/quiz/health", None, 200),
        ("GET", "/api/leaderboard/health", None, 200),
        ("GET", "/api/quiz/schema/openapi.json", None, 200),
        ("GET", "/api/leaderboard/schema/openapi.json", None, 200),
        ("GET", "/docs/", None, 200),
        ("GET", "/", None, 200),
        ("GET", "/host", None, 200),
    ],
)
def test_public_routes_stay_public(
    http: httpx.Client, method: str, path: str, body: dict | None, status: int
) -> None:
    r = http.request(method, path, json=body, headers={"X-Real-IP": "1.2.3.4"})
    assert r.status_code == status, r.text


@pytest.mark.stack
def test_services_still_verify_tokens_without_the_gateway(api: Api, stack_dir: Path) -> None:
    """The second line: each service refuses hostile tokens when reached directly."""
    layout = read_layout(stack_dir)
    _, tokens = _guest_and_hostile_tokens(api, stack_dir)
    sid = str(uuid.uuid4())
    targets = [
        (layout.quiz_ports[0], "GET", f"/api/quiz/sessions/{sid}/question"),
        (layout.leaderboard_ports[0], "GET", f"/api/leaderboard/sessions/{sid}/top"),
    ]
    for port, method, path in targets:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for name, token in tokens.items():
                r = c.request(method, path, headers=_bearer(token))
                assert r.status_code == 401, f"{name}: {port} {path} -> {r.status_code}"


# --------------------------------------------------------------------------- forged headers


class _Echo(http.server.BaseHTTPRequestHandler):
    """Stands in for the services: records each request's headers, answers 200 JSON."""

    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def _any(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        _Echo.seen.append({"path": self.path, "headers": self.headers.items()})
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_gateway(tmp_path: Path, stack_dir: Path) -> Iterator[str]:
    """A second nginx from the same template: the stack's IAM, an echo server as every service."""
    from infra.stack import Layout, render_nginx

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    echo = server.server_address[1]
    lay = dataclasses.replace(
        Layout.test(tmp_path),
        iam_ports=read_layout(stack_dir).iam_ports,
        quiz_ports=[echo],
        leaderboard_ports=[echo],
        sio_ports=[echo],
        sio_sockets=[],  # the echo server listens on TCP only
    )
    (tmp_path / "logs").mkdir()
    try:
        with own_nginx(render_nginx(lay), lay.http_port):
            _Echo.seen = []
            yield lay.base_url
    finally:
        server.shutdown()


FORGED = {
    "X-Auth-User-Id": "someone-else",
    "X-Auth-Role": "host",
    "X-Auth-Nickname": "admin",
}


@pytest.mark.stack
def test_caller_headers_forged_by_a_client_never_reach_a_service(
    echo_gateway: str, api: Api
) -> None:
    player = api.guest(nickname="Zoë")
    uid = player["user"]["id"]
    other = api.guest()
    with httpx.Client(base_url=echo_gateway, timeout=10) as c:
        r = c.post(
            f"/api/quiz/sessions/{uuid.uuid4()}/answers",
            json={"question_id": "q", "choice": 0},
            headers={**api.auth(player), **FORGED},
        )
        assert r.status_code == 200, r.text
        # Two Authorization headers: nginx refuses the request itself.
        r = c.get(
            f"/api/leaderboard/sessions/{uuid.uuid4()}/top",
            headers=[
                ("Authorization", f"Bearer {player['access_token']}"),
                ("Authorization", f"Bearer {other['access_token']}"),
                *FORGED.items(),
            ],
        )
        assert r.status_code == 400 and r.json()["status_code"] == 400, r.text
        # Public routes and socket.io: no caller is forwarded at all.
        assert c.get("/api/quiz/health", headers=FORGED).status_code == 200
        c.get("/socket.io/?EIO=4&transport=polling", headers=FORGED)
        # A forged token with forged caller headers never gets there.
        r = c.get(
            f"/api/quiz/sessions/{uuid.uuid4()}/question", headers={**_bearer("x.y.z"), **FORGED}
        )
        assert r.status_code == 401
    assert len(_Echo.seen) == 3, [s["path"] for s in _Echo.seen]
    for request in _Echo.seen:
        names = [k.lower() for k, _ in request["headers"]]
        values = {k.lower(): v for k, v in request["headers"]}
        assert names.count("authorization") <= 1, request
        assert "admin" not in values.values() and "someone-else" not in values.values()
        if request["path"].startswith(("/api/quiz/sessions", "/api/leaderboard/sessions")):
            assert values["x-auth-user-id"] == uid
            assert values["x-auth-role"] == "player"
            assert unquote(values["x-auth-nickname"]) == "Zoë"
            assert values["authorization"] == f"Bearer {player['access_token']}"
        else:
            assert not any(n.startswith("x-auth-") for n in names), request
