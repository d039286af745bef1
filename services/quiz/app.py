"""Quiz service: quizzes, sessions, joining, answering, scoring."""

from services.common import db, redis
from services.common.web import create_app

app = create_app(
    "quiz",
    [],
    health={"postgres": db.ping, "redis": redis.ping},
    on_startup=[db.open_pool],
    on_shutdown=[db.close_pool, redis.close_redis],
)
