"""IAM through nginx: hosts, guests, login, refresh rotation, JWKS and every refusal.

Each test talks from its own loopback address (127.0.10.N), so nginx's
per-address login limit never mixes these calls with other tests' calls.
Tokens that IAM would never issue (expired, wrong audience, ...) are minted
here with the stack's own signing key, so the checks they trip are the claim
checks, not just the signature.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import get, post
from litestar.testing import TestClient

from services.common import auth
from services.common.auth import AuthError, Caller, TokenVerifier, host_only, provide_caller
from services.common.settings import get_settings
from services.common.web import create_app
from tests.support.api import unique
from tests.support.tokens import claims, keyring, sign_with

# ./dev test runs this module in its 'last' phase (infra/stack/cli.py, PHASES):
# it scans the IAM log for every secret the run sent.
pytestmark = [pytest.mark.stack, pytest.mark.last]

PASSWORD = "correct horse 9"
# Every password and token these tests send; the last test greps the IAM log for them.
SENT_SECRETS: set[str] = {PASSWORD}
_addresses = itertools.count(1)


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    """A client of nginx from a loopback address of its own (own rate-limit bucket)."""
    n = next(_addresses)
    transport = httpx.HTTPTransport(local_address=f"127.0.10.{n % 250 + 1}")
    with httpx.Client(base_url=base_url, transport=transport, timeout=20) as c:
        yield c


def register(c: httpx.Client, username: str | None = None, **extra: str) -> dict:
    body = {"username": username or unique("host"), "password": PASSWORD, **extra}
    r = c.post("/api/iam/users", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def login(c: httpx.Client, username: str, password: str = PASSWORD) -> dict:
    r = c.post("/api/iam/token", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    pair = r.json()
    SENT_SECRETS.update((pair["access_token"], pair["refresh_token"]))
    return pair


def guest(c: httpx.Client, nickname: str = "player one") -> dict:
    r = c.post("/api/iam/guests", json={"nickname": nickname})
    assert r.status_code == 201, r.text
    pair = r.json()
    SENT_SECRETS.update((pair["access_token"], pair["refresh_token"]))
    return pair


def refresh(c: httpx.Client, token: str) -> httpx.Response:
    return c.post("/api/iam/token/refresh", json={"refresh_token": token})


def assert_error(r: httpx.Response, status: int, field: str | None = None) -> dict:
    """``r`` is a JSON error with ``status``; ``field`` (if given) is named in its detail."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["status_code"] == status and body["detail"], body
    if field is not None:
        assert f"`{field}`" in body["detail"], body
    return body


def claims_of(token: str, jwks: dict) -> dict:
    """The claims of ``token`` verified with the JWKS key its header names."""
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    s = get_settings()
    return jwt.decode(
        token,
        jwt.PyJWK.from_dict(jwk).key,
        algorithms=["EdDSA"],
        audience=s.jwt_audience,
        issuer=s.jwt_issuer,
    )


# --------------------------------------------------------------------------- hosts


def test_register_then_login_issues_a_host_token(client: httpx.Client) -> None:
    username = unique("host")
    user = register(client, username, nickname="  Quiz Master  ")
    assert user["username"] == username
    assert user["nickname"] == "Quiz Master"  # trimmed
    assert user["role"] == "host"
    assert "password" not in json.dumps(user) and "hash" not in json.dumps(user)

    pair = login(client, username)
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == get_settings().access_ttl_s
    assert pair["user"] == {
        "id": user["id"],
        "nickname": "Quiz Master",
        "role": "host",
        "username": username,
    }
    claims = claims_of(pair["access_token"], client.get("/api/iam/jwks").json())
    assert claims["sub"] == user["id"]
    assert claims["role"] == "host" and claims["nickname"] == "Quiz Master"
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == get_settings().access_ttl_s


def test_nickname_defaults_to_username(client: httpx.Client) -> None:
    username = unique("h")
    assert register(client, username)["nickname"] == username


def test_duplicate_username_is_409(client: httpx.Client) -> None:
    username = unique("dup")
    register(client, username)
    r = client.post("/api/iam/users", json={"username": username, "password": "other pass 1"})
    assert_error(r, 409)


def test_wrong_password_and_unknown_user_get_the_same_401(client: httpx.Client) -> None:
    username = unique("host")
    register(client, username)
    wrong = client.post("/api/iam/token", json={"username": username, "password": "wrong pw 99"})
    unknown = client.post(
        "/api/iam/token", json={"username": unique("nobody"), "password": PASSWORD}
    )
    SENT_SECRETS.add("wrong pw 99")
    # Same answer for both: the caller cannot tell which usernames exist.
    assert assert_error(wrong, 401) == assert_error(unknown, 401)
    assert wrong.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("username", ["\x00", "a\x00b"])
def test_login_with_a_nul_in_the_username_is_422_not_500(
    client: httpx.Client, username: str
) -> None:
    # PostgreSQL text refuses NUL; schemathesis found this as a 500 once. The
    # contract refuses NUL in every string that may reach a column.
    r = client.post("/api/iam/token", json={"username": username, "password": "0"})
    assert_error(r, 422, "username")


def test_guests_cannot_log_in_with_a_password(client: httpx.Client) -> None:
    pair = guest(client, "ghost")
    r = client.post("/api/iam/token", json={"username": pair["user"]["id"], "password": PASSWORD})
    assert_error(r, 401)


# --------------------------------------------------------------------------- guests


def test_guest_gets_player_tokens(client: httpx.Client) -> None:
    pair = guest(client, "  Ana  ")
    assert pair["user"]["role"] == "player"
    assert pair["user"]["nickname"] == "Ana"
    assert pair["user"]["username"] is None
    claims = claims_of(pair["access_token"], client.get("/api/iam/jwks").json())
    assert (claims["sub"], claims["role"], claims["nickname"]) == (
        pair["user"]["id"],
        "player",
        "Ana",
    )


@pytest.mark.parametrize(
    "nickname",
    ["   ", "", "x" * 25, "a\x01b", "tab\there", "new\nline", "a\x85b", "evil\u202eeman"],
    ids=["blank", "empty", "25-chars", "control", "tab", "newline", "c1-control", "bidi"],
)
def test_bad_nicknames_are_422_naming_the_field(client: httpx.Client, nickname: str) -> None:
    assert_error(client.post("/api/iam/guests", json={"nickname": nickname}), 422, "nickname")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(" " * 5 + "x" * 24 + " " * 5, "x" * 24), ("👩‍💻 dev", "👩‍💻 dev"), ("Zoë", "Zoë")],
    ids=["trimmed-before-length-check", "emoji-with-zwj", "accents"],
)
def test_good_nicknames_are_trimmed_and_kept(client: httpx.Client, sent: str, kept: str) -> None:
    assert guest(client, sent)["user"]["nickname"] == kept


def test_host_nickname_follows_the_same_rules(client: httpx.Client) -> None:
    r = client.post(
        "/api/iam/users", json={"username": unique("h"), "password": PASSWORD, "nickname": "  "}
    )
    assert_error(r, 422, "nickname")


# --------------------------------------------------------------------------- refresh


def test_refresh_rotates_the_pair(client: httpx.Client) -> None:
    first = guest(client)
    r = refresh(client, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    SENT_SECRETS.update((second["access_token"], second["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user"] == first["user"]
    jwks = client.get("/api/iam/jwks").json()
    assert claims_of(second["access_token"], jwks)["sub"] == first["user"]["id"]
    # The new refresh token works once; the old one stopped working.
    third = refresh(client, second["refresh_token"])
    assert third.status_code == 200, third.text
    SENT_SECRETS.add(third.json()["refresh_token"])
    assert_error(refresh(client, first["refresh_token"]), 401)


def test_reusing_a_rotated_refresh_token_revokes_the_family(client: httpx.Client) -> None:
    username = unique("host")
    register(client, username)
    victim = login(client, username)
    other_device = login(client, username)  # another login: another family
    rotated = refresh(client, victim["refresh_token"])
    assert rotated.status_code == 200
    newest = rotated.json()["refresh_token"]
    SENT_SECRETS.add(newest)

    # A thief replays the old token: refused, and the whole family is revoked.
    assert "reused" in assert_error(refresh(client, victim["refresh_token"]), 401)["detail"]
    assert_error(refresh(client, newest), 401)
    # The other family is untouched.
    ok = refresh(client, other_device["refresh_token"])
    assert ok.status_code == 200, ok.text
    SENT_SECRETS.add(ok.json()["refresh_token"])


def test_concurrent_use_of_one_refresh_token_succeeds_once(client: httpx.Client) -> None:
    token = guest(client)["refresh_token"]
    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: refresh(client, token).status_code, range(4)))
    assert statuses == [200, 401, 401, 401]


@pytest.mark.parametrize("token", ["nope", "x" * 200], ids=["unknown", "long-unknown"])
def test_unknown_refresh_token_is_401(client: httpx.Client, token: str) -> None:
    assert_error(refresh(client, token), 401)


def test_an_access_token_is_not_a_refresh_token(client: httpx.Client) -> None:
    access = guest(client)["access_token"]
    # Longer than any refresh token (at most 200 characters): an invalid field, never a pair.
    assert len(access) > 200
    assert_error(refresh(client, access), 422, "refresh_token")


# --------------------------------------------------------------------------- JWKS


def test_jwks_publishes_only_public_ed25519_keys(client: httpx.Client) -> None:
    r = client.get("/api/iam/jwks")
    assert r.status_code == 200
    keys = r.json()["keys"]
    assert keys
    for k in keys:
        assert (k["kty"], k["crv"], k["alg"], k["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
        assert k["kid"] and k["x"]
        assert "d" not in k  # never the private part
    access = guest(client)["access_token"]
    assert jwt.get_unverified_header(access)["kid"] == keys[0]["kid"]


async def test_another_process_verifies_tokens_from_the_jwks(base_url: str) -> None:
    """The shared verifier, as any other service runs it, with the JWKS fetched via nginx."""
    async with httpx.AsyncClient(base_url=base_url) as c:
        r = await c.post("/api/iam/guests", json={"nickname": "verify me"})
        pair = r.json()
    SENT_SECRETS.update((pair["access_token"], pair["refresh_token"]))
    verifier = TokenVerifier(jwks_url=f"{base_url}/api/iam/jwks")
    caller = await verifier.verify(pair["access_token"])
    assert caller == Caller(user_id=pair["user"]["id"], role="player", nickname="verify me")
    with pytest.raises(AuthError):
        await verifier.verify(pair["refresh_token"])


# --------------------------------------------------------------------------- token refusals


@pytest.fixture(scope="module")
def signing_key(stack_dir: Path) -> Ed25519PrivateKey:
    """The stack's own IAM signing key (to mint tokens IAM would never issue)."""
    return keyring(stack_dir).signing_key


@pytest.fixture(scope="module")
def kid(base_url: str) -> str:
    return httpx.get(f"{base_url}/api/iam/jwks").json()["keys"][0]["kid"]


def _claims(**override: object) -> dict:
    """A host's access-token claims as IAM issues them, ``override`` replaced (None drops)."""
    return claims("00000000-0000-0000-0000-000000000001", "host", **override)


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def bad_tokens(key: Ed25519PrivateKey, kid: str, player_token: str) -> dict[str, str]:
    """Tokens that must all be refused with 401, by what is wrong with them."""

    def signed(payload: dict, signer: Ed25519PrivateKey = key) -> str:
        return sign_with(signer, payload, kid)

    head, _, sig = player_token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(player_token.split(".")[1] + "=="))
    payload["role"] = "host"
    return {
        "expired": signed(_claims(iat=int(time.time()) - 1000, exp=int(time.time()) - 60)),
        "wrong-audience": signed(_claims(aud="someone-else")),
        "wrong-issuer": signed(_claims(iss="evil-iam")),
        "not-an-access-token": signed(_claims(typ="refresh")),
        "no-expiry": signed(_claims(exp=None)),
        "forged-signature": signed(_claims(), signer=Ed25519PrivateKey.generate()),
        "unknown-kid": jwt.encode(
            _claims(),
            Ed25519PrivateKey.generate(),
            algorithm="EdDSA",
            headers={"kid": "not-a-published-key"},
        ),
        "alg-none": f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_b64(_claims())}.",
        "alg-hs256": jwt.encode(
            _claims(), "secret-guess-" * 3, algorithm="HS256", headers={"kid": kid}
        ),
        "tampered-role": f"{head}.{_b64(payload)}.{sig}",
        "garbage": "not.a.jwt",
    }


@pytest.fixture(scope="module")
def guarded_client(base_url: str) -> Iterator[TestClient]:
    """A tiny app with the shared guard and caller dependency, verifying via nginx's JWKS."""

    @get("/me", dependencies={"caller": provide_caller}, sync_to_thread=False)
    def me(caller: Caller) -> dict:
        return {"user_id": caller.user_id, "role": caller.role}

    @post("/hosts-only", guards=[host_only], sync_to_thread=False, status_code=200)
    def hosts_only() -> dict:
        return {"ok": True}

    app = create_app("guardcheck", [me, hosts_only], health={})
    original = auth.verifier
    auth.verifier = TokenVerifier(jwks_url=f"{base_url}/api/iam/jwks")
    try:
        with TestClient(app) as c:
            yield c
    finally:
        auth.verifier = original


def test_the_guard_accepts_real_tokens_and_enforces_the_role(
    client: httpx.Client, guarded_client: TestClient
) -> None:
    player = guest(client)
    username = unique("host")
    register(client, username)
    host = login(client, username)
    bearer = {"Authorization": f"Bearer {player['access_token']}"}
    me = guarded_client.get("/api/guardcheck/me", headers=bearer)
    assert me.json() == {"user_id": player["user"]["id"], "role": "player"}
    r = guarded_client.post("/api/guardcheck/hosts-only", headers=bearer)
    assert r.status_code == 403 and r.json()["status_code"] == 403
    r = guarded_client.post(
        "/api/guardcheck/hosts-only", headers={"Authorization": f"Bearer {host['access_token']}"}
    )
    assert r.status_code == 200, r.text


def test_the_guard_refuses_every_bad_token_with_401(
    client: httpx.Client, guarded_client: TestClient, signing_key: Ed25519PrivateKey, kid: str
) -> None:
    player = guest(client)["access_token"]
    for what, token in bad_tokens(signing_key, kid, player).items():
        for method, path in (("GET", "/api/guardcheck/me"), ("POST", "/api/guardcheck/hosts-only")):
            r = guarded_client.request(method, path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (what, path, r.text)
            assert r.json()["status_code"] == 401
    for header in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        r = guarded_client.get("/api/guardcheck/me", headers=header)
        assert r.status_code == 401, (header, r.text)


def test_a_real_host_only_endpoint_refuses_bad_tokens_and_players(
    client: httpx.Client, signing_key: Ed25519PrivateKey, kid: str
) -> None:
    """Through nginx to the quiz service: `POST /api/quiz/quizzes` is for hosts only."""
    username = unique("host")
    register(client, username)
    host = login(client, username)
    probe = client.post(
        "/api/quiz/quizzes", json={}, headers={"Authorization": f"Bearer {host['access_token']}"}
    )
    assert_error(probe, 422)  # a host's token passed; the empty body did not
    player = guest(client)
    r = client.post(
        "/api/quiz/quizzes", json={}, headers={"Authorization": f"Bearer {player['access_token']}"}
    )
    assert_error(r, 403)
    for what, token in bad_tokens(signing_key, kid, player["access_token"]).items():
        r = client.post("/api/quiz/quizzes", json={}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (what, r.text)
        assert_error(r, 401)


# --------------------------------------------------------------------------- bad input

ENDPOINTS = {
    "/api/iam/guests": {"nickname": "valid nick"},
    "/api/iam/users": {"username": "valid_user", "password": PASSWORD},
    "/api/iam/token": {"username": "valid_user", "password": PASSWORD},
    "/api/iam/token/refresh": {"refresh_token": "valid-looking-token"},
}


@pytest.mark.parametrize("path", list(ENDPOINTS))
@pytest.mark.parametrize(
    "body",
    [b"{", b'{"a": }', b"\xff\xfe", b"nickname=x"],
    ids=["truncated", "bad-value", "not-utf8", "form"],
)
def test_malformed_json_is_400(client: httpx.Client, path: str, body: bytes) -> None:
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400)


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_each_field_is_named_when_missing_mistyped_or_unknown(
    client: httpx.Client, path: str
) -> None:
    valid = ENDPOINTS[path]
    for field in valid:
        missing = {k: v for k, v in valid.items() if k != field}
        assert_error(client.post(path, json=missing), 422, field)
        for wrong in (123, None, ["x"], {"x": 1}):
            assert_error(client.post(path, json={**valid, field: wrong}), 422, field)
    assert_error(client.post(path, json={**valid, "is_admin": True}), 422, "is_admin")
    not_objects: list[object] = [[], "text", 5, None]
    for not_an_object in not_objects:
        assert_error(client.post(path, json=not_an_object), 422)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ab", "password": PASSWORD}, "username"),
        ({"username": "has space", "password": PASSWORD}, "username"),
        ({"username": unique("h"), "password": "short"}, "password"),
        ({"username": unique("h"), "password": "p" * 129}, "password"),
    ],
    ids=["short-username", "username-chars", "short-password", "long-password"],
)
def test_register_field_rules(client: httpx.Client, body: dict, field: str) -> None:
    assert_error(client.post("/api/iam/users", json=body), 422, field)


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_oversized_body_is_413_json(client: httpx.Client, path: str) -> None:
    body = json.dumps({"nickname": "x" * 400_000}).encode()
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 413)


# --------------------------------------------------------------------------- logs


def test_the_iam_log_holds_no_password_or_token(client: httpx.Client, stack_dir: Path) -> None:
    """Runs last in this module: nothing sent above may appear in the IAM log."""
    # One more login with a distinctive password, so the check has fresh material.
    username = unique("host")
    SENT_SECRETS.add(PASSWORD)
    register(client, username)
    login(client, username)
    assert_error(
        client.post("/api/iam/token", json={"username": username, "password": "Wr0ng-Secret-77"}),
        401,
    )
    SENT_SECRETS.add("Wr0ng-Secret-77")
    log = (stack_dir / "logs" / "iam-1.log").read_text(errors="replace")
    leaked = sorted(s[:12] + "..." for s in SENT_SECRETS if s in log)
    assert not leaked, f"secrets in the IAM log: {leaked}"
    assert "$argon2id$" not in log
    assert "eyJ" not in log  # no JWT at all
