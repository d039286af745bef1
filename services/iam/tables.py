"""IAM tables (Piccolo). The DDL is in piccolo_migrations/."""

from piccolo.columns import UUID, Boolean, ForeignKey, Text, Timestamptz
from piccolo.table import Table


class IamUser(Table, tablename="iam_user"):
    id = UUID(primary_key=True)
    username = Text(null=True, unique=True)  # None for guest players
    password_hash = Text(null=True)
    nickname = Text()
    role = Text()  # "player" | "host"
    created_at = Timestamptz()


class IamRefreshToken(Table, tablename="iam_refresh_token"):
    """Opaque refresh tokens, stored as SHA-256; one family per login."""

    id = UUID(primary_key=True)
    user = ForeignKey(IamUser, db_column_name="user_id")
    family_id = UUID()
    token_hash = Text(unique=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    revoked = Boolean(default=False)
    created_at = Timestamptz()
