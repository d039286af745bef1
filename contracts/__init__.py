"""msgspec Structs for every HTTP body, Kafka event and socket.io event.

The one source of truth for messages: services, the leaderboard consumer, the
socket.io tier, the load tests and the generated documents in ``docs/`` all use
these. Field names follow ``docs/protocol.md``; never rename or drop one.
"""

from contracts.events import *  # noqa: F403
from contracts.http import *  # noqa: F403
