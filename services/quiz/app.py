"""Quiz service: quizzes, sessions, joining, answering, scoring (Litestar app on granian)."""

from services.common import db, redis
from services.common.web import create_app
from services.quiz import answer_route, background
from services.quiz.controllers import QuizController

app = create_app(
    "quiz",
    [QuizController],
    # Kafka is reported, but answers never wait for it (the outbox relay catches up).
    health={"postgres": db.ping, "redis": redis.ping, "kafka": background.relay.healthy},
    # Answers are accepted while Redis or Kafka is down (outbox, PostgreSQL ranks).
    degraded_ok=frozenset({"redis", "kafka"}),
    on_startup=[db.open_pool, background.start],
    on_shutdown=[background.stop, db.close_pool, redis.close_redis],
    description="Quizzes, live and self-paced sessions, answers scored on the server,"
    " SCORE_CHANGE through an outbox.",
)
# Well-formed answers with a verified token skip Litestar's request handling.
answer_route.install(app)
