"""Piccolo's configuration: one PostgreSQL engine (asyncpg pool) and the apps with tables."""

from piccolo.conf.apps import AppRegistry

from services.common.db import DB

APP_REGISTRY = AppRegistry(
    apps=["services.iam.piccolo_app", "services.quiz.piccolo_app"],
)
__all__ = ["APP_REGISTRY", "DB"]
