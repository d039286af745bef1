"""IAM signing keys and password rules without a stack: key files, rotation, JWKS, nicknames."""

from __future__ import annotations

import base64
import multiprocessing
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.iam import keys
from services.iam.service import InvalidNickname, clean_nickname, hash_password, verify_password


def _load_kid(directory: str) -> str:
    return keys.load_from_dir(Path(directory)).signing_kid


def test_first_start_creates_one_key_and_keeps_it(tmp_path: Path) -> None:
    ring = keys.load_from_dir(tmp_path / "keys")
    pem = tmp_path / "keys" / "signing.pem"
    assert pem.exists() and pem.stat().st_mode & 0o777 == 0o600
    assert keys.load_from_dir(tmp_path / "keys").signing_kid == ring.signing_kid
    assert not [p for p in (tmp_path / "keys").iterdir() if p.name.startswith(".key-")]


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    directory = str(tmp_path / "keys")
    with multiprocessing.get_context("fork").Pool(6) as pool:
        kids = pool.map(_load_kid, [directory] * 6)
    assert len(set(kids)) == 1


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its Ed25519 example key.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "="))
    assert keys.PublicKey.of(public).kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_rotation_keeps_the_old_key_published(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    before = keys.load_from_dir(directory)
    token = jwt.encode(
        {"sub": "u"}, before.signing_key, algorithm="EdDSA", headers={"kid": before.signing_kid}
    )
    old_kid, new_kid = keys.rotate(directory)
    after = keys.load_from_dir(directory)
    assert old_kid == before.signing_kid and new_kid == after.signing_kid != old_kid
    published = {k["kid"]: k for k in after.jwks()["keys"]}
    assert next(iter(published)) == new_kid and old_kid in published
    # A token signed before the rotation still verifies from the JWKS.
    key = jwt.PyJWK.from_dict(published[old_kid]).key
    assert jwt.decode(token, key, algorithms=["EdDSA"])["sub"] == "u"
    # The retired file holds no private key.
    assert b"PRIVATE" not in (directory / f"retired-{old_kid}.pem").read_bytes()


def test_keys_from_the_environment_current_first(tmp_path: Path) -> None:
    def pem() -> str:
        return (
            Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )

    current, previous = pem(), pem()
    ring = keys.load_from_pem(current + previous)
    assert len(ring.jwks()["keys"]) == 2
    assert ring.jwks()["keys"][0]["kid"] == ring.signing_kid
    # A PEM pasted into one line with literal "\n" works too.
    assert keys.load_from_pem(current.replace("\n", "\\n")).signing_kid == ring.signing_kid
    with pytest.raises(ValueError):
        keys.load_from_pem("not a key")


def test_jwks_never_holds_private_material(tmp_path: Path) -> None:
    for jwk in keys.load_from_dir(tmp_path).jwks()["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}


@pytest.mark.parametrize(
    ("raw", "clean"), [("  ann ", "ann"), ("x" * 24, "x" * 24), ("👩‍💻", "👩‍💻")]
)
def test_clean_nickname_trims(raw: str, clean: str) -> None:
    assert clean_nickname(raw) == clean


@pytest.mark.parametrize("raw", ["   ", "x" * 25, "a\u0085b", "a\u202eb", "a\u2028b", "a\tb"])
def test_clean_nickname_refuses(raw: str) -> None:
    with pytest.raises(InvalidNickname):
        clean_nickname(raw)


async def test_password_hashing_round_trip() -> None:
    stored = await hash_password("correct horse 9")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert await verify_password(stored, "correct horse 9")
    assert not await verify_password(stored, "correct horse 8")
    assert not await verify_password(None, "anything")  # unknown user: still False
