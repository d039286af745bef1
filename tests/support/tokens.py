"""Access tokens IAM would never issue, for the tests that check they are refused.

``claims`` builds access-token claims as IAM issues them, with any claim replaced
or dropped; ``sign``/``sign_with`` sign them. Some tests need a token signed by
the stack's real IAM key with bad claims (wrong audience, expired, a
refresh-typed token): the test stack's key file is under its run folder, so the
tests can sign them, as an insider with a stolen key could not do better. The
others need no key at all (forged signatures, ``alg: none``, HS256 keyed with the
public key, a foreign key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.settings import get_settings
from services.iam.keys import SIGNING_FILE, KeyRing, load_from_dir


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64json(obj: dict) -> str:
    return _b64(json.dumps(obj, separators=(",", ":")).encode())


def keyring(stack_dir: Path) -> KeyRing:
    """The running IAM's signing key (read, never created: the file must exist)."""
    keys = stack_dir / "keys"
    assert (keys / SIGNING_FILE).exists(), f"no IAM signing key in {keys}"
    return load_from_dir(keys)


def claims(user_id: str, role: str = "player", **override: object) -> dict:
    """Access-token claims as IAM issues them; ``override`` replaces (None drops) one."""
    s = get_settings()
    now = int(time.time())
    c: dict = {
        "sub": user_id,
        "role": role,
        "nickname": "mallory",
        "iat": now,
        "exp": now + 300,
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "typ": "access",
    }
    for k, v in override.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return c


def sign_with(key: Ed25519PrivateKey, payload: dict, kid: str) -> str:
    """``payload`` signed (EdDSA) by ``key``, with ``kid`` in the header."""
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


def sign(ring: KeyRing, payload: dict, kid: str | None = None) -> str:
    """A token signed with the real key (EdDSA), as IAM would sign it."""
    return sign_with(ring.signing_key, payload, kid or ring.signing_kid)


def _realg(token: str, header: dict) -> str:
    """``token`` with its header replaced (the signature no longer covers it)."""
    _, payload, signature = token.split(".")
    return f"{_b64json(header)}.{payload}.{signature}"


def hostile_tokens(ring: KeyRing, real_token: str, user_id: str) -> dict[str, str]:
    """name -> a token every service must refuse (401, socket.io connect refused)."""
    header, payload, signature = real_token.split(".")
    sig = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    sig[0] ^= 0x01
    forged = f"{header}.{payload}.{_b64(bytes(sig))}"
    # The same claims, but the payload changed to a host role under the old signature.
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered = f"{header}.{_b64json({**body, 'role': 'host'})}.{signature}"

    good = claims(user_id)
    none_token = (
        f"{_b64json({'alg': 'none', 'typ': 'JWT', 'kid': ring.signing_kid})}.{_b64json(good)}."
    )
    # HS256 keyed with the published public key: the classic algorithm confusion.
    pub = ring.signing_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    hs_head = _b64json({"alg": "HS256", "typ": "JWT", "kid": ring.signing_kid})
    hs_body = _b64json(good)
    hs_sig = hmac.new(pub, f"{hs_head}.{hs_body}".encode(), hashlib.sha256).digest()
    hs256 = f"{hs_head}.{hs_body}.{_b64(hs_sig)}"
    stranger = Ed25519PrivateKey.generate()
    return {
        "forged signature": forged,
        "payload changed to host": tampered,
        "alg none": none_token,
        "alg none, no signature part": none_token.rstrip("."),
        "HS256 keyed with the public key": hs256,
        "signed by another key, real kid": jwt.encode(
            good, stranger, algorithm="EdDSA", headers={"kid": ring.signing_kid}
        ),
        "signed by another key, unknown kid": jwt.encode(
            good, stranger, algorithm="EdDSA", headers={"kid": "not-a-real-kid"}
        ),
        # Another algorithm under the real kid: the key verifies EdDSA only (these
        # were a 500 / a socket.io connect without reply, PyJWT raising TypeError).
        "ES256 under the real kid": jwt.encode(
            good,
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": ring.signing_kid},
        ),
        "ES256 header, real EdDSA signature": _realg(
            sign(ring, good), {"alg": "ES256", "typ": "JWT", "kid": ring.signing_kid}
        ),
        "kid is a list": _realg(
            sign(ring, good), {"alg": "EdDSA", "typ": "JWT", "kid": [ring.signing_kid]}
        ),
        "no kid": jwt.encode(good, ring.signing_key, algorithm="EdDSA"),
        "wrong audience": sign(ring, claims(user_id, aud="another-service")),
        "wrong issuer": sign(ring, claims(user_id, iss="https://evil.example")),
        "expired": sign(
            ring, claims(user_id, iat=int(time.time()) - 4000, exp=int(time.time()) - 60)
        ),
        "no expiry": sign(ring, claims(user_id, exp=None)),
        "not yet valid": sign(ring, claims(user_id, nbf=int(time.time()) + 3600)),
        "refresh-typed": sign(ring, claims(user_id, typ="refresh")),
        "no typ": sign(ring, claims(user_id, typ=None)),
        "garbage": "not.a.jwt",
        "empty segments": "..",
        "huge": "eyJ" + "A" * 6000,
    }
