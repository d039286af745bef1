"""Leaderboard consumer: SCORE_CHANGE -> Redis top 10 -> TOP_10 + room events."""

import asyncio
import logging

from services.common.logs import setup_logging


async def main() -> None:
    log = setup_logging()
    log.info("consumer ready")
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig()
    asyncio.run(main())
