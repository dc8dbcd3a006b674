"""Stopping background tasks for certain, even when something inside swallows a cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel `tasks` and wait for them to end, cancelling again every half second: a library
    awaited inside may swallow one cancellation, and a shutdown must never wait forever."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {task for task in tasks if not task.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, max(0.01, deadline - loop.time())))
    for task in pending:
        logger.warning("task %s did not stop within %.0f s; leaving it", task.get_name(), timeout)
