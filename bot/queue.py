"""The queue: one turn at a time per thread, in arrival order, every accepted message answered once.

A message is persisted in the inbox before anything else happens, so neither Slack's retries
nor a restart produce a second answer, and a restart picks up what was left unanswered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from slack_sdk.web.async_client import AsyncWebClient

from storage import InboxMessage, Store, ThreadKey

from .reply import SLACK_ERRORS
from .turn import TurnRunner

logger = logging.getLogger(__name__)

QUEUED_REACTION = "hourglass_flowing_sand"


@dataclass
class ResetRequest:
    """A reset queued behind any running turn, so a container is never reset mid-turn."""

    thread: ThreadKey
    user_id: str
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

class TurnQueue:
    """Owns the per-thread queues; everything Slack asks of a thread goes through here."""

    def __init__(self, *, store: Store, slack: AsyncWebClient, runner: TurnRunner) -> None:
        self.store = store
        self.slack = slack
        self.runner = runner
        self._queues: dict[ThreadKey, deque[ResetRequest | None]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        # Messages showing the "queued" reaction, so it is taken off when their turn comes.
        self._marked_queued: set[tuple[str, str]] = set()


    async def submit(self, message: InboxMessage, *, starts_conversation: bool) -> bool:
        """Accept a Slack message for an answer; False if it was accepted before (retry/twin)."""
        if starts_conversation:
            await self.store.start_conversation(message.thread)
        accepted = await self.store.accept_message(message)
        if accepted:
            waits = message.thread in self._queues
            self._enqueue(message.thread, None)
            if waits:
                await self._mark_queued(message)
        return accepted

    async def reset(self, thread: ThreadKey, user_id: str) -> bool:
        """Give the thread a fresh container and history; False if the bot had none there."""
        request = ResetRequest(thread, user_id)
        self._enqueue(thread, request)
        return await request.done

    async def resume_pending(self) -> int:
        """After a restart: queue every accepted message that was not answered yet."""
        threads = await self.store.threads_with_pending()
        for thread in threads:
            self._enqueue(thread, None)
        return len(threads)

    @property
    def busy(self) -> bool:
        """Whether any thread has a turn running or queued."""
        return bool(self._workers)

    async def drain(self) -> None:
        """Wait until every queued turn is answered (tests and graceful shutdown)."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)

    async def shutdown(self, grace_seconds: float) -> None:
        """Let running turns finish for a while, then stop; unanswered messages stay in the inbox."""
        try:
            await asyncio.wait_for(self.drain(), grace_seconds)
        except TimeoutError:
            logger.warning("stopping with turns still running; they resume on the next start")
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*list(self._workers), return_exceptions=True)

    # --- the per-thread queue ------------------------------------------------------------

    def _enqueue(self, thread: ThreadKey, item: ResetRequest | None) -> None:
        """Queue a reset, or (None) a wake-up: the worker reads messages from the inbox in order."""
        queue = self._queues.get(thread)
        if queue is None:
            queue = self._queues[thread] = deque()
            worker = asyncio.create_task(self._work(thread, queue))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append(item)

    async def _work(self, thread: ThreadKey, queue: deque[ResetRequest | None]) -> None:
        try:
            while queue:
                item = queue.popleft()
                if item is not None:
                    await self._run_reset(item)
                    continue
                while (message := await self.store.next_pending(thread)) is not None:
                    await self._unmark_queued(message)
                    await self.runner.answer(message)
                    await self.store.mark_done(message)
        finally:
            # No await between the emptiness check above and this removal: no wake-up is lost.
            del self._queues[thread]
            for item in queue:
                if item is not None and not item.done.done():
                    item.done.cancel()

    async def _mark_queued(self, message: InboxMessage) -> None:
        """Visible at once: this message waits for the answer before it in the thread."""
        key = (message.thread.channel_id, message.message_ts)
        self._marked_queued.add(key)
        try:
            await self.slack.reactions_add(channel=key[0], timestamp=key[1], name=QUEUED_REACTION)
        except SLACK_ERRORS as error:
            logger.debug("could not mark %s as queued: %s", key, error)
        if key not in self._marked_queued:  # its turn began while the reaction was on its way
            await self._remove_queued_reaction(key)

    async def _unmark_queued(self, message: InboxMessage) -> None:
        key = (message.thread.channel_id, message.message_ts)
        if key in self._marked_queued:
            self._marked_queued.discard(key)
            await self._remove_queued_reaction(key)

    async def _remove_queued_reaction(self, key: tuple[str, str]) -> None:
        try:
            await self.slack.reactions_remove(channel=key[0], timestamp=key[1], name=QUEUED_REACTION)
        except SLACK_ERRORS as error:
            logger.debug("could not unmark %s: %s", key, error)

    # --- one reset -----------------------------------------------------------------------
    async def _run_reset(self, request: ResetRequest) -> None:
        try:
            request.done.set_result(await self.runner.reset(request.thread, request.user_id))
        except Exception as error:  # noqa: BLE001 - reported to the caller, never crashes the worker
            logger.exception("reset of %s failed", request.thread)
            request.done.set_exception(error)
