"""Fast checks (no server) of the pieces behind the security fixes: canonical ids,
the socket.io JSON codec on deep input, the nickname rule, and
the token verifier's one-algorithm-per-key rule."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from realtime_sio import jsonmsg
from services.common.auth import AuthError, TokenVerifier
from services.common.ids import canonical_uuid
from services.common.settings import get_settings
from services.iam.service import InvalidNickname, clean_nickname


def test_only_the_canonical_spelling_is_an_id() -> None:
    u = uuid.uuid4()
    assert canonical_uuid(str(u)) == u
    for other in (str(u).upper(), u.hex, "{" + str(u) + "}", u.urn, f" {u}", f"{u}\n", 7, None):
        assert canonical_uuid(other) is None, other


def test_socketio_codec_answers_deep_input_with_the_too_deep_event() -> None:
    assert jsonmsg.loads("[" * 5000 + "]" * 5000) == [jsonmsg.TOO_DEEP]
    with pytest.raises(ValueError):
        jsonmsg.loads("[1,")
    assert jsonmsg.loads('["join",{"session_id":"x"}]') == ["join", {"session_id": "x"}]


@pytest.mark.parametrize(
    "bad",
    ["\u200eab", "a\u200fb", "a\u061cb", "\u200b=1", "\ufeffx", "a\u2060b", "a\u00adb", "a\u202eb"],
)
def test_nicknames_refuse_invisible_format_characters(bad: str) -> None:
    with pytest.raises(InvalidNickname):
        clean_nickname(bad)


def test_nicknames_keep_joiners_and_flag_tags() -> None:
    for good in (
        "\U0001f469\u200d\U0001f4bb",
        "a\u200cb",
        "\U0001f3f4\U000e0067\U000e0062\U000e007f",
    ):
        assert clean_nickname(good) == good


def test_a_key_verifies_only_its_own_algorithm() -> None:
    key = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "alg": "EdDSA"}
    verifier = TokenVerifier(jwks_url="http://127.0.0.1:9/unused")
    verifier.load_jwks({"keys": [jwk]})
    s = get_settings()
    claims = {
        "sub": "u",
        "exp": int(time.time()) + 60,
        "aud": s.jwt_audience,
        "iss": s.jwt_issuer,
        "typ": "access",
    }
    good = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k1"})
    es256 = jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "k1"}
    )
    caller, exp = asyncio.run(verifier.verify_until(good))
    assert caller.user_id == "u" and exp == claims["exp"]
    with pytest.raises(AuthError, match="algorithm"):
        asyncio.run(verifier.verify(es256))
