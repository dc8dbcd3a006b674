"""What shows that a message waits: the ⏳ reaction on it, and (when a cap holds it back) a note
to its author saying why."""

from __future__ import annotations

import logging

from storage import InboxMessage, Store, TurnLimits

from ..errors import SLACK_ERRORS
from ..threads import is_slack_message
from ..workspaces import Workspace, WorkspaceResolver
from .notices import tell_privately

logger = logging.getLogger(__name__)

QUEUED_REACTION = "hourglass_flowing_sand"
PERSON_CAP_NOTE = (
    ":hourglass_flowing_sand: You already have {running} answers running; this one starts as soon as"
    " one of them finishes."
)
OVERALL_CAP_NOTE = (
    ":hourglass_flowing_sand: threadbox is busy with as many answers as it runs at once; yours starts"
    " as soon as one of them finishes."
)


class WaitingSigns:
    """Marks waiting messages once, whichever process sees them first (the store decides)."""

    def __init__(self, store: Store, workspaces: WorkspaceResolver) -> None:
        self.store = store
        self.workspaces = workspaces

    async def show_queued(self, item_id: int, message: InboxMessage) -> None:
        """Visible at once: this message waits for the answer before it in the thread."""
        if not await self.store.mark_queued(item_id):
            return
        workspace = await self.workspaces.resolve(message.thread.team_id)
        if workspace is not None:
            await self._react(workspace, item_id, message)

    async def _react(self, workspace: Workspace, item_id: int, message: InboxMessage) -> None:
        channel, ts = message.thread.channel_id, message.message_ts
        if not is_slack_message(ts):  # a scheduled run: no message of its own to mark
            return
        try:
            await workspace.client.reactions_add(channel=channel, timestamp=ts, name=QUEUED_REACTION)
        except SLACK_ERRORS as error:
            logger.debug("could not mark %s as queued: %s", ts, error)
        if await self.store.item_state(item_id) != "pending":  # its turn began meanwhile
            await remove_queued_reaction(workspace, channel, ts)

    async def newly_held_back(self, limits: TurnLimits) -> list[InboxMessage]:
        """New turns a full cap holds back that have not shown it yet, now marked as showing it."""
        if not limits.any:
            return []
        return [
            message for message in await self.store.held_back(limits)
            if message.id is not None and await self.store.mark_queued(message.id)
        ]

    async def show_held_back(self, message: InboxMessage, limits: TurnLimits) -> None:
        """The author hears once why their turn waits, and the message shows it."""
        item_id = message.id or 0
        workspace = await self.workspaces.resolve(message.thread.team_id)
        if workspace is None:
            return
        mine, _ = await self.store.running_turns(message.thread.team_id, message.user_id)
        if limits.per_person is not None and mine >= limits.per_person:
            note = PERSON_CAP_NOTE.format(running=mine)
        else:
            note = OVERALL_CAP_NOTE
        await tell_privately(
            workspace.client, message.thread.channel_id, message.user_id, message.thread.thread_ts or None, note
        )
        await self._react(workspace, item_id, message)


async def remove_queued_reaction(workspace: Workspace, channel: str, ts: str) -> None:
    """The message's turn has begun: it no longer waits."""
    if not is_slack_message(ts):
        return
    try:
        await workspace.client.reactions_remove(channel=channel, timestamp=ts, name=QUEUED_REACTION)
    except SLACK_ERRORS as error:
        logger.debug("could not unmark %s: %s", ts, error)
