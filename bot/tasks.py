"""Stopping tasks for certain (even when something inside swallows a cancellation), and on request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
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


async def run_until(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run `work` to its end, or cancel it once `stop` is set; True when it was cut short.

    A cancellation of the caller (a deadline, a shutdown) cancels `work` too and goes on up.
    """
    if stop.is_set():
        work.close()
        return True
    running = asyncio.ensure_future(work)
    waiting = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not running.done():
            await stop_tasks([running])
        waiting.cancel()
    if running.cancelled():
        return True
    running.result()  # its exception, if it raised one
    return False
