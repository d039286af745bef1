"""nginx caches IAM's verdicts per token and route class (services/iam/gateway.py).

The class of a request is the access rule of the POLICY row it matches, computed by
nginx with a map rendered from that table. These tests hold the map to the table
(nginx's first-match over the rendered regexes gives every request the class IAM
gives it), prove that one class means one verdict for every token (so a verdict
cached for one route of a class is the verdict of every other), that a class IAM
does not recognise is refused uncached, and, on the stack, that a token whose pass
is cached for caller routes still cannot reach a host route.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest

from services.iam.gateway import POLICY, Access, Gatekeeper, Policy, Route, Verdict
from tests.conftest import Api
from tests.support.tokens import claims, hostile_tokens, sign
from tests.test_gateway_auth import _assert_json_error, _log_after_control, _ring_and_gatekeeper

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Path segments that could confuse a match: other rows' literal words, dots, escapes.
VALUES = ["x1", "join", "sessions", "answers", "advance", "results", "question", "top"]
VALUES += ["players", "quizzes", "..", "%2F", "a.b", str(uuid.uuid4())]


def nginx_map(policy: Policy) -> list[tuple[re.Pattern[str], str]]:
    entries = []
    for line in policy.nginx_classes().splitlines():
        m = re.fullmatch(r'\s*"~(.*)" "(.*)";', line)
        assert m, line
        entries.append((re.compile(m.group(1)), m.group(2)))
    return entries


def nginx_class(entries: list[tuple[re.Pattern[str], str]], method: str, path: str) -> str:
    """What nginx's map gives ``"$request_method $gw_path"``: the first regex that
    matches, else the default (method and path)."""
    for regex, value in entries:
        if regex.search(f"{method} {path}"):
            return value
    return f"{method} {path}"


def sample_paths(routes: tuple[Route, ...] = POLICY) -> set[str]:
    """Every row's path with its parameters filled in from VALUES, with a rest, and
    with a segment too many or too few."""
    paths = {"", "/api/quiz", "/api/quiz/", "/api/quiz/nothing", "/api/leaderboard/sessions"}
    for r in routes:
        body = r.path.removesuffix("/**")
        names = re.findall(r"\{\w+\}", body)
        for fill in itertools.product(VALUES[:6] if len(names) > 1 else VALUES, repeat=len(names)):
            p = body
            for name, value in zip(names, fill, strict=True):
                p = p.replace(name, value, 1)
            paths |= {p, f"{p}/x1", p.rsplit("/", 1)[0], f"{p}/"}
        if r.path.endswith("/**"):
            paths |= {f"{body}/openapi.json", f"{body}/swagger", f"{body}/a/b"}
    return paths


def test_nginx_gives_every_request_the_class_the_table_gives_it() -> None:
    policy = Policy(POLICY)
    entries = nginx_map(policy)
    for method, path in itertools.product(METHODS, sample_paths()):
        assert nginx_class(entries, method, path) == policy.cache_class(method, path), (
            method,
            path,
        )


def test_rows_out_of_order_or_overlapping_still_agree() -> None:
    """First match wins on both sides, also where rows overlap and differ."""
    routes = (
        Route("HEAD", "/api/quiz/sessions/{a}/x", Access.PUBLIC),  # never taken: HEAD is GET
        Route("GET", "/api/quiz/sessions/{a}/x", Access.HOST),
        Route("GET", "/api/quiz/sessions/join/x", Access.CALLER),  # shadowed by the first
        Route("POST", "/api/quiz/sessions/{a}/{b}", Access.CALLER),
        Route("POST", "/api/quiz/sessions/{a}/x", Access.HOST),  # shadowed
        Route("GET", "/api/quiz/docs/**", Access.PUBLIC),
    )
    policy = Policy(routes)
    entries = nginx_map(policy)
    for method, path in itertools.product(METHODS, sample_paths(routes) | sample_paths()):
        assert nginx_class(entries, method, path) == policy.cache_class(method, path), (
            method,
            path,
        )
    assert Policy(routes).fingerprint != Policy(routes[:-1]).fingerprint


def _same(a: Verdict, b: Verdict) -> bool:
    """Equal verdicts (a cache lifetime computed a second apart may differ by one)."""
    ha, hb = dict(a.headers), dict(b.headers)
    ta, tb = int(ha.pop("X-Accel-Expires")), int(hb.pop("X-Accel-Expires"))
    return (a.status, ha) == (b.status, hb) and abs(ta - tb) <= 1


async def test_one_class_is_one_verdict_for_every_token(tmp_path: Path) -> None:
    """The cache key is sound: two requests of one class get one verdict, whatever the
    token, so a verdict cached for one of them cannot pass a token the other refuses."""
    ring, gate = _ring_and_gatekeeper(Policy(POLICY), tmp_path)
    player = sign(ring, claims("u-1"))
    host = sign(ring, claims("u-2", role="host"))
    forged = hostile_tokens(ring, player, "u-1")["forged signature"]
    expired = sign(ring, claims("u-1", iat=int(time.time()) - 900, exp=int(time.time()) - 5))
    tokens = ["", "Basic abc", *(f"Bearer {t}" for t in (player, host, forged, expired))]
    policy = gate.policy
    members: dict[str, list[tuple[str, str]]] = {}
    for method, path in itertools.product(METHODS, sample_paths()):
        key = policy.cache_class(method, path)
        if key != f"{method} {path}":  # shared by every request of the class
            members.setdefault(key, []).append((method, path))
    assert {k.split(".")[0] for k in members} == {a.value for a in Access}
    for key, requests in members.items():
        for token in tokens:
            first = await gate.decide(*requests[0], token, key)
            for method, path in requests[1:]:
                v = await gate.decide(method, path, token, key)
                assert _same(v, first), (key, token[:12], method, path, v, first)


async def test_a_class_that_is_not_the_tables_is_refused_uncached(tmp_path: Path) -> None:
    ring, gate = _ring_and_gatekeeper(Policy(POLICY), tmp_path)
    host = "Bearer " + sign(ring, claims("u-2", role="host"))
    advance = "/api/quiz/sessions/s1/advance"
    good = gate.policy.cache_class("POST", advance)
    assert good == gate.policy.class_name(Access.HOST)
    assert (await gate.decide("POST", advance, host, good)).status == 200
    # A gateway rendered from another table, or a class claimed for another request.
    for claimed in (
        Policy(POLICY[:-1]).class_name(Access.HOST),
        gate.policy.class_name(Access.CALLER),
        f"POST {advance}",
        "",
    ):
        v = await gate.decide("POST", advance, host, claimed)
        assert (v.status, v.headers) == (500, {"X-Accel-Expires": "0"}), claimed
    assert isinstance(gate, Gatekeeper)


async def test_a_path_nginx_cannot_forward_is_not_found_not_a_gateway_error(
    tmp_path: Path,
) -> None:
    """nginx forwards an empty path when the request's is not plain ASCII (``%12``),
    and its class ``"POST "`` reaches IAM as ``"POST"`` (a header value loses its
    surrounding spaces): that is the table's class, so the caller gets 404, not the
    502 of a gateway that could not decide (found by the schemathesis run)."""
    ring, gate = _ring_and_gatekeeper(Policy(POLICY), tmp_path)
    player = "Bearer " + sign(ring, claims("u-1"))
    for method in ("GET", "POST"):
        v = await gate.decide(method, "", player, method)
        assert v.status != 500, (method, v)
        assert v.headers.get("X-Gateway-Status") == "404" or v.status == 404, (method, v)


# --------------------------------------------------------------------------- the stack


@pytest.mark.stack
def test_a_pass_cached_for_caller_routes_never_opens_a_host_route(
    http: httpx.Client, api: Api, stack_dir: Path
) -> None:
    player = api.guest()
    marker = f"class-{uuid.uuid4().hex[:12]}"
    caller_paths = [
        ("GET", f"/api/quiz/sessions/{marker}/question"),
        ("POST", f"/api/quiz/sessions/{marker}/answers"),
        ("GET", f"/api/leaderboard/sessions/{marker}/top"),
        ("GET", f"/api/quiz/sessions/{marker}-2/question"),
    ]
    host_paths = [
        ("POST", f"/api/quiz/sessions/{marker}/advance"),
        ("GET", f"/api/quiz/sessions/{marker}/results"),
        ("GET", f"/api/quiz/quizzes/{marker}"),
    ]
    for _ in range(2):  # the second round comes from the verdict cache
        for method, path in caller_paths:
            body = {"question_id": "q", "choice": 0} if method == "POST" else None
            r = http.request(method, path, json=body, headers=Api.auth(player))
            assert r.status_code == 404, (path, r.text)  # not a session id: the service's own
        for method, path in host_paths:
            r = http.request(method, path, headers=Api.auth(player))
            _assert_json_error(r, 403, "Only hosts may do this")
    log, _ = _log_after_control(http, player, stack_dir)
    reached = [line for line in log.splitlines() if marker in line]
    assert reached and not any(p in line for line in reached for _, p in host_paths), reached
