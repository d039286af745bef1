from pathlib import Path

from piccolo.conf.apps import AppConfig

from services.iam.tables import IamRefreshToken, IamUser

APP_CONFIG = AppConfig(
    app_name="iam",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[IamUser, IamRefreshToken],
)
