"""Ids as the services write them: a UUID in its one canonical spelling.

``uuid.UUID`` also reads upper case, no dashes, braces and ``urn:uuid:``; a key
built from such a spelling would name a board, room or cache entry of its own
that nothing ever writes. Every id from a client passes through
``canonical_uuid`` before any key is built; another spelling is simply unknown.
"""

from __future__ import annotations

import uuid


def canonical_uuid(value: object) -> uuid.UUID | None:
    """The UUID ``value`` names when it is spelled canonically (``str(uuid)``), else None."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return parsed if str(parsed) == value else None
