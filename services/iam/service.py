"""IAM logic: guests, hosts, passwords, access tokens and refresh-token rotation.

No HTTP in here: the exceptions below carry their status (``services.common.errors``)
and the app factory's one handler answers them.

Refresh tokens are opaque random strings; only their SHA-256 is stored. Each
login (or guest creation) starts a *family*; every refresh marks the presented
token used and issues the next one of the same family. Presenting a token that
was already used means it was copied: the whole family is revoked, so both the
thief and the victim must sign in again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass

import anyio.to_thread
import asyncpg
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from contracts.http import TokenPair, UserOut
from services.common import db
from services.common.errors import ServiceError
from services.common.settings import Settings, get_settings
from services.iam.keys import ALGORITHM, KeyRing, load_keyring
from services.iam.tables import IamRefreshToken, IamUser

NICKNAME_MAX = 24
# Format characters (Cf) are invisible: bidi overrides, isolates and marks
# (U+200E, U+200F, U+061C) make a nickname render as someone else's, zero-width
# spaces and the BOM hide what it starts with (a CSV formula, an impersonation).
# All are refused except the joiners that writing systems and emoji need: ZWNJ and
# ZWJ (U+200C, U+200D) and the tag characters of emoji flag sequences.
_FORMAT_ALLOWED = frozenset("\u200c\u200d") | frozenset(map(chr, range(0xE0020, 0xE0080)))

# argon2id, 19 MiB, 3 passes, 1 lane: ~27 ms per hash on this 2-core machine
# (measured), above OWASP's minimum (19 MiB, 2 passes). Hashing runs in a worker
# thread so the event loop keeps serving other requests meanwhile.
_hasher = PasswordHasher(time_cost=3, memory_cost=19456, parallelism=1)
# Verified when the username is unknown, so a miss costs as much as a hit
# (no timing oracle for which usernames exist).
_DUMMY_HASH = _hasher.hash("not a real password, only burns time")

# Refresh rotation (see IamService.refresh). The family lock is a transaction-scoped
# advisory lock keyed by the family id: rotations and revocations of one family run
# one at a time, and a lock that collides with another family's only waits a little.
_FAMILY_OF = "select family_id from iam_refresh_token where token_hash = $1"
_LOCK_FAMILY = "select pg_advisory_xact_lock(hashtextextended($1, 0))"
# Under the lock: the token's state as committed now; it is marked used when it was
# usable (and the user exists), and the row before the update tells which case it is.
_CLAIM = """
with old as (
    select t.id, t.user_id, t.used_at, t.revoked, t.expires_at,
           u.nickname, u.role, u.username
    from iam_refresh_token t left join iam_user u on u.id = t.user_id
    where t.token_hash = $1
), claimed as (
    update iam_refresh_token t set used_at = $2
    from old
    where t.id = old.id and old.used_at is null and not old.revoked
      and old.expires_at > $2 and old.nickname is not null
)
select * from old
"""
_REVOKE_FAMILY = "update iam_refresh_token set revoked = true where family_id = $1"
_INSERT_TOKEN = """
insert into iam_refresh_token (id, user_id, family_id, token_hash, expires_at, created_at)
values ($1, $2, $3, $4, $5, $6)
"""


BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="quizrt"'}


class IamError(ServiceError):
    """Base of the IAM's errors (each class names its HTTP status)."""


class InvalidNickname(IamError, ValueError):
    """The nickname is empty after trimming or holds control characters (422)."""

    status_code = 422

    def __init__(self, detail: str):
        super().__init__(detail, field="nickname")


class UsernameTaken(IamError):
    """A user with this username exists already (409)."""

    status_code = 409
    detail = "Username is taken"


class InvalidCredentials(IamError):
    """Unknown username or wrong password (401); which one is never told."""

    status_code = 401
    detail = "Wrong username or password"
    headers = BEARER_CHALLENGE


class InvalidRefreshToken(IamError):
    """Unknown, expired, revoked or reused refresh token (401)."""

    status_code = 401
    headers = BEARER_CHALLENGE


def clean_nickname(raw: str) -> str:
    """``raw`` trimmed, checked: 1-24 characters, no control characters."""
    nick = raw.strip()
    if not nick:
        raise InvalidNickname("nickname must not be blank")
    if len(nick) > NICKNAME_MAX:
        raise InvalidNickname(f"nickname must be at most {NICKNAME_MAX} characters")
    if any(_refused(c) for c in nick):
        raise InvalidNickname("nickname must not contain control or invisible format characters")
    return nick


def _refused(c: str) -> bool:
    category = unicodedata.category(c)
    return category in ("Cc", "Zl", "Zp", "Cs") or (category == "Cf" and c not in _FORMAT_ALLOWED)


def _hash_refresh(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; always costs one argon2 verification."""

    def check() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check)


@dataclass(frozen=True)
class _User:
    id: str
    nickname: str
    role: str
    username: str | None

    def out(self) -> UserOut:
        return UserOut(
            id=self.id,
            nickname=self.nickname,
            role=self.role,  # type: ignore[arg-type]
            username=self.username,
        )


class IamService:
    """Users and tokens. One instance per process; the key ring is set at startup."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.keys: KeyRing | None = None

    # ------------------------------------------------------------------ tokens

    def access_token(self, user: _User) -> str:
        """A signed access JWT for ``user``, valid ``access_ttl_s`` seconds."""
        if self.keys is None:
            raise RuntimeError("the IAM key ring is not loaded")
        now = int(time.time())
        claims = {
            "sub": user.id,
            "role": user.role,
            "nickname": user.nickname,
            "iat": now,
            "exp": now + self.settings.access_ttl_s,
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "typ": "access",
        }
        return jwt.encode(
            claims,
            self.keys.signing_key,
            algorithm=ALGORITHM,
            headers={"kid": self.keys.signing_kid},
        )

    async def _new_refresh_token(self, user_id: str, family_id: uuid.UUID) -> str:
        token = secrets.token_urlsafe(32)
        await IamRefreshToken.insert(
            IamRefreshToken(
                id=uuid.uuid4(),
                user=uuid.UUID(user_id),
                family_id=family_id,
                token_hash=_hash_refresh(token),
                expires_at=_now() + dt.timedelta(seconds=self.settings.refresh_ttl_s),
                created_at=_now(),
            )
        )
        return token

    async def _pair(self, user: _User, family_id: uuid.UUID | None = None) -> TokenPair:
        refresh = await self._new_refresh_token(user.id, family_id or uuid.uuid4())
        return TokenPair(
            access_token=self.access_token(user),
            refresh_token=refresh,
            expires_in=self.settings.access_ttl_s,
            user=user.out(),
        )

    # ------------------------------------------------------------------ users

    async def create_guest(self, nickname: str) -> TokenPair:
        """A new guest player (nickname only) and its first token pair."""
        user = _User(
            id=str(uuid.uuid4()), nickname=clean_nickname(nickname), role="player", username=None
        )
        await IamUser.insert(
            IamUser(
                id=uuid.UUID(user.id),
                username=None,
                password_hash=None,
                nickname=user.nickname,
                role=user.role,
                created_at=_now(),
            )
        )
        return await self._pair(user)

    async def register(self, username: str, password: str, nickname: str | None) -> UserOut:
        """A new host; raises UsernameTaken when the username exists."""
        nick = clean_nickname(nickname if nickname is not None else username)
        user = _User(id=str(uuid.uuid4()), nickname=nick, role="host", username=username)
        password_hash = await hash_password(password)
        try:
            await IamUser.insert(
                IamUser(
                    id=uuid.UUID(user.id),
                    username=username,
                    password_hash=password_hash,
                    nickname=nick,
                    role="host",
                    created_at=_now(),
                )
            )
        except asyncpg.UniqueViolationError as e:
            raise UsernameTaken() from e
        return user.out()

    async def login(self, username: str, password: str) -> TokenPair:
        """A token pair for a host's username and password; raises InvalidCredentials."""
        row = None
        # PostgreSQL text cannot hold NUL, so no stored username has one (found by fuzzing).
        if "\x00" not in username:
            row = (
                await IamUser.select(
                    IamUser.id, IamUser.nickname, IamUser.role, IamUser.password_hash
                )
                .where(IamUser.username == username)
                .first()
            )
        stored: str | None = row["password_hash"] if row else None
        matches = await verify_password(stored, password)  # also when unknown: same cost
        if row is None or stored is None or not matches:
            raise InvalidCredentials()
        if _hasher.check_needs_rehash(stored):  # parameters were raised since it was stored
            new_hash = await hash_password(password)
            await IamUser.update({IamUser.password_hash: new_hash}).where(IamUser.id == row["id"])
        user = _User(
            id=str(row["id"]), nickname=row["nickname"], role=row["role"], username=username
        )
        return await self._pair(user)

    # ------------------------------------------------------------------ refresh

    async def refresh(self, token: str) -> TokenPair:
        """Rotate ``token``: mark it used, issue the next pair of its family.

        A token that was used before revokes its whole family (theft detection).
        Raises InvalidRefreshToken for unknown, expired, revoked or reused tokens.

        The whole rotation is one transaction holding the family's lock (a
        transaction-scoped advisory lock on the family id), and so is a revocation:
        a rotation either commits before a revocation (whose UPDATE then sees, and
        revokes, the token it issued) or starts after it and finds the family
        revoked. No token issued in a race outlives its family's revocation.
        """
        token_hash = _hash_refresh(token)
        async with db.connection() as conn, conn.transaction():
            family = await conn.fetchval(_FAMILY_OF, token_hash)
            if family is None:
                raise InvalidRefreshToken("refresh token unknown, expired or revoked")
            await conn.execute(_LOCK_FAMILY, str(family))
            row = await conn.fetchrow(_CLAIM, token_hash, _now())
            if row["used_at"] is not None:
                await conn.execute(_REVOKE_FAMILY, family)
                reused = True
            elif row["revoked"] or row["expires_at"] <= _now() or row["nickname"] is None:
                reused = False
            else:
                user = _User(
                    id=str(row["user_id"]),
                    nickname=row["nickname"],
                    role=row["role"],
                    username=row["username"],
                )
                refresh = secrets.token_urlsafe(32)
                await conn.execute(
                    _INSERT_TOKEN,
                    uuid.uuid4(),
                    row["user_id"],
                    family,
                    _hash_refresh(refresh),
                    _now() + dt.timedelta(seconds=self.settings.refresh_ttl_s),
                    _now(),
                )
                return TokenPair(
                    access_token=self.access_token(user),
                    refresh_token=refresh,
                    expires_in=self.settings.access_ttl_s,
                    user=user.out(),
                )
        # Raised after the transaction committed, so the revocation is durable first.
        if reused:
            raise InvalidRefreshToken("refresh token reused: its family is revoked")
        raise InvalidRefreshToken("refresh token unknown, expired or revoked")

    def jwks(self) -> dict:
        """The public keys that verify access tokens (JWKS)."""
        if self.keys is None:
            raise RuntimeError("the IAM key ring is not loaded")
        return self.keys.jwks()

    async def load_keys(self) -> None:
        """Load (or create on first start) the signing keys; file work off the loop."""
        self.keys = await anyio.to_thread.run_sync(load_keyring, self.settings)


_service: IamService | None = None


def get_iam_service() -> IamService:
    """The process's IamService (created on first use)."""
    global _service
    if _service is None:
        _service = IamService()
    return _service
