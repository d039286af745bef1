"""Leaderboard HTTP API: top-N and a player's own rank, from Redis."""

from services.common import db, redis
from services.common.web import create_app
from services.leaderboard.controllers import LeaderboardController

app = create_app(
    "leaderboard",
    [LeaderboardController],
    health={"redis": redis.ping, "postgres": db.ping},
    on_startup=[db.open_pool],
    on_shutdown=[db.close_pool, redis.close_redis],
    description="Top-N of a session and a player's own rank, served from Redis.",
)
