"""One logging setup for every process: one line per record, never secrets."""

from __future__ import annotations

import logging
import os
import re

from services.common.settings import get_settings

# Anything that looks like a bearer token, JWT, password or refresh token is masked.
_SECRET = re.compile(
    r"(eyJ[\w-]+\.[\w-]+\.[\w-]+)|((?:password|refresh_token|access_token|token)"
    r"[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}]+",
    re.IGNORECASE,
)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = _SECRET.sub(lambda m: "<jwt>" if m.group(1) else f"{m.group(2)}<redacted>", msg)
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


def setup_logging() -> logging.Logger:
    name = os.environ.get("QUIZ_PROCESS_NAME", "quizrt")
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(get_settings().log_level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return logging.getLogger(name)
