"""A reset: the thread's container, history and files go, and the thread is told."""

from __future__ import annotations

import logging

import anthropic

from storage import QueueItem, Store, ThreadKey

from ..errors import SLACK_ERRORS
from ..model.files import delete_files
from ..model.transcript import thread_file_ids
from ..ops.logs import audit
from ..outbound.notices import tell_requester
from ..threads import reply_thread_ts
from ..workspaces import Workspace

logger = logging.getLogger(__name__)


class Resets:
    """Resets threads, from an in-thread `!reset` or from a queued reset (command, shortcut, button)."""

    def __init__(self, store: Store, claude: anthropic.AsyncAnthropic) -> None:
        self.store = store
        self.claude = claude

    async def reset(self, workspace: Workspace, thread: ThreadKey, user_id: str, item_id: int) -> bool:
        """Forget the container, the history and the thread's files, and say so in the thread
        (once: the asking item is settled with the reset, so a crash never repeats it)."""
        conversation = await self.store.load_conversation(thread)
        existed = await self.store.reset(thread, item_id)
        audit("reset", thread, user=user_id, existed=existed)
        await delete_files(self.claude, thread_file_ids(conversation.history))
        if existed:
            await workspace.client.chat_postMessage(
                channel=thread.channel_id,
                thread_ts=reply_thread_ts(thread),
                text=(
                    f":recycle: Fresh start: <@{user_id}> reset this conversation. The next message"
                    " runs in a new container with an empty history."
                ),
            )
        return existed

    async def reset_for(self, workspace: Workspace, item: QueueItem) -> None:
        """A queued reset's turn: reset, then tell the person who asked (their `response_url`).
        One an earlier attempt already did is not done (nor told) again."""
        if item.answered:
            return
        try:
            existed = await self.reset(workspace, item.thread, item.user_id, item.id)
        except SLACK_ERRORS as error:
            logger.error("reset of %s done, but its confirmation failed: %s", item.thread, error)
            existed = True
        if item.response_url:
            await tell_requester(item.response_url, reset_outcome(item.thread, existed), item.replace_original)


def reset_outcome(thread: ThreadKey, existed: bool) -> str:
    """What the person who asked for a reset is told when it has happened."""
    if not existed:
        where = "this conversation" if thread.thread_ts == "" else "that thread"
        return f"threadbox has no conversation in {where}, so there is nothing to reset."
    return ":recycle: Done: the next message there starts in a fresh container with an empty history."
