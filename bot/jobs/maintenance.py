"""Housekeeping while the bot runs: forget answered queue rows, and apply the retention period."""

from __future__ import annotations

import asyncio
import logging

import anthropic

from storage import Store

from ..model.files import delete_files
from ..model.transcript import thread_file_ids
from ..ops.logs import audit, log_failure

logger = logging.getLogger(__name__)

# Slack stops retrying an event after about an hour; a day of answered rows is plenty.
QUEUE_RETENTION_SECONDS = 24 * 3600
# A thread retention emptied is still known (a follow-up there is answered) for this many
# retention periods, then forgotten entirely.
KNOWN_THREAD_PERIODS = 4


async def forget_idle_threads(store: Store, claude: anthropic.AsyncAnthropic, idle_seconds: float) -> int:
    """Delete the files (Files API) and the stored history of threads idle that long."""
    forgotten = 0
    while threads := await store.idle_threads(idle_seconds):
        for thread in threads:
            conversation = await store.load_conversation(thread)
            files = thread_file_ids(conversation.history)
            await delete_files(claude, files)
            await store.forget(thread)
            audit("retention", thread, files=len(files))
            forgotten += 1
    return forgotten


async def maintain(
    store: Store, claude: anthropic.AsyncAnthropic, *, retention_seconds: float, interval_seconds: float
) -> None:
    """Run the housekeeping now and then every `interval_seconds`; failures are retried next time."""
    while True:
        try:
            await delete_leftover_uploads(store, claude)
            pruned = await store.prune(QUEUE_RETENTION_SECONDS, KNOWN_THREAD_PERIODS * retention_seconds)
            forgotten = await forget_idle_threads(store, claude, retention_seconds)
            if pruned or forgotten:
                logger.info("housekeeping: %d queue row(s) pruned, %d idle thread(s) forgotten", pruned, forgotten)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - tried again at the next interval
            log_failure("housekeeping failed", error, logger)
        await asyncio.sleep(interval_seconds)


async def delete_leftover_uploads(store: Store, claude: anthropic.AsyncAnthropic) -> int:
    """Files API copies made for messages that ended without a stored answer (given up, or
    refused): no thread will ever use them."""
    deleted = 0
    for item_id, file_ids in (await store.leftover_uploads()).items():
        if await delete_files(claude, file_ids) == len(file_ids):
            await store.clear_uploads(item_id)
            deleted += len(file_ids)
    return deleted
