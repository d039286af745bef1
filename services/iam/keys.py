"""Ed25519 signing keys of the IAM service and the JWKS that publishes them.

Where keys come from, in order:

- ``QUIZ_JWT_PRIVATE_KEY``: one or more PEM private keys, concatenated; the first
  signs, the others are previous keys still published for verification.
- otherwise ``<run_dir>/keys/``: ``signing.pem`` (the current private key,
  created on first start) and ``retired-*.pem`` (previous public keys, still
  published until they are deleted, i.e. at least one access-token lifetime).

Rotation without downtime: ``python -m services.iam.keys rotate`` retires the
current key and creates a new one; restart the IAM processes one by one. Old
tokens still verify (their key stays in the JWKS) and verifiers refetch the JWKS
when they meet the new key id.

    python -m services.iam.keys rotate [--keys-dir DIR]   retire the current key
    python -m services.iam.keys show   [--keys-dir DIR]   print the JWKS
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.common.settings import Settings, get_settings

SIGNING_FILE = "signing.pem"
RETIRED_GLOB = "retired-*.pem"
ALGORITHM = "EdDSA"
_PEM_BLOCK = re.compile(
    r"-----BEGIN (?:ENCRYPTED )?PRIVATE KEY-----.+?-----END (?:ENCRYPTED )?PRIVATE KEY-----",
    re.DOTALL,
)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class PublicKey:
    """A verification key with its key id (RFC 7638 thumbprint of its JWK)."""

    kid: str
    key: Ed25519PublicKey

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> PublicKey:
        x = _b64url(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        # The thumbprint hashes the required members in lexicographic order, no spaces.
        canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
        return cls(kid=_b64url(hashlib.sha256(canonical.encode()).digest()), key=key)

    def jwk(self) -> dict[str, str]:
        raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _b64url(raw),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        }


@dataclass(frozen=True)
class KeyRing:
    """The key that signs new tokens and every key the JWKS publishes."""

    signing_key: Ed25519PrivateKey
    signing_kid: str
    published: tuple[PublicKey, ...]

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set: the current key first, then the previous ones."""
        return {"keys": [k.jwk() for k in self.published]}


def _ring(current: Ed25519PrivateKey, previous: list[Ed25519PublicKey]) -> KeyRing:
    cur = PublicKey.of(current.public_key())
    published = [cur]
    for key in previous:
        pk = PublicKey.of(key)
        if pk.kid not in {p.kid for p in published}:
            published.append(pk)
    return KeyRing(signing_key=current, signing_kid=cur.kid, published=tuple(published))


def _private_from_pem(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the JWT signing key must be an Ed25519 private key")
    return key


def _public_from_pem(pem: bytes) -> Ed25519PublicKey:
    if b"PRIVATE KEY" in pem:
        return _private_from_pem(pem).public_key()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("retired keys must be Ed25519 keys")
    return key


def _new_private_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _create_exclusive(path: Path, content: bytes) -> bool:
    """Write ``path`` only if it does not exist yet; False when another process won.

    The content goes to a private temporary file first and is then hard-linked
    into place: ``link`` fails when the name exists (like ``O_EXCL``), and a
    reader never sees a half-written key.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def keys_dir(settings: Settings | None = None) -> Path:
    return Path((settings or get_settings()).run_dir) / "keys"


def load_from_dir(directory: Path) -> KeyRing:
    """The key ring of ``directory``; creates ``signing.pem`` there on first use."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    signing = directory / SIGNING_FILE
    if not signing.exists():
        _create_exclusive(signing, _new_private_pem())
    current = _private_from_pem(signing.read_bytes())
    previous = [_public_from_pem(p.read_bytes()) for p in sorted(directory.glob(RETIRED_GLOB))]
    return _ring(current, previous)


def load_from_pem(text: str) -> KeyRing:
    """The key ring of one or more concatenated PEM private keys (first one signs)."""
    blocks = _PEM_BLOCK.findall(text.replace("\\n", "\n"))
    if not blocks:
        raise ValueError("QUIZ_JWT_PRIVATE_KEY holds no PEM private key")
    keys = [_private_from_pem(b.encode()) for b in blocks]
    return _ring(keys[0], [k.public_key() for k in keys[1:]])


def load_keyring(settings: Settings | None = None) -> KeyRing:
    """The process's key ring: from ``QUIZ_JWT_PRIVATE_KEY`` or the key folder."""
    s = settings or get_settings()
    if s.jwt_private_key.strip():
        return load_from_pem(s.jwt_private_key)
    return load_from_dir(keys_dir(s))


def rotate(directory: Path) -> tuple[str, str]:
    """Retire the current key (its public half stays published) and create a new one.

    Returns (retired kid, new kid).
    """
    ring = load_from_dir(directory)
    retired = directory / f"retired-{ring.signing_kid}.pem"
    retired.write_bytes(
        ring.signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    fresh = directory / ".signing.next.pem"
    fresh.write_bytes(_new_private_pem())
    os.chmod(fresh, 0o600)
    os.replace(fresh, directory / SIGNING_FILE)  # atomic: readers see old or new, never none
    return ring.signing_kid, load_from_dir(directory).signing_kid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="services.iam.keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("command", choices=["rotate", "show"])
    ap.add_argument("--keys-dir", type=Path, default=None)
    a = ap.parse_args(argv)
    directory = a.keys_dir or keys_dir()
    if a.command == "rotate":
        old, new = rotate(directory)
        print(f"retired {old}; signing with {new}. Restart the IAM processes one by one.")
    else:
        print(json.dumps(load_from_dir(directory).jwks(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
