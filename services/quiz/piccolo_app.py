from pathlib import Path

from piccolo.conf.apps import AppConfig

from services.quiz.tables import Answer, Handout, Outbox, Quiz, QuizSession, SessionPlayer

APP_CONFIG = AppConfig(
    app_name="quiz",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[Quiz, QuizSession, SessionPlayer, Handout, Answer, Outbox],
)
