"""The `TurnContext`: everything one queue item's turn carries down the path.

Built once per item by the queue, from the item and the workspace it resolved; every step of
the turn (checks, commands, prompt, model, reply, files owed) reads from it instead of holding
a Slack client, a bot user id or settings of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from storage import InboxMessage, QueueItem, ThreadKey

from ..channels.book import ChannelSettings
from ..outbound.blocks import thread_value
from ..outbound.notices import say, say_problems, tell_privately
from ..outbound.state import ReplyTarget
from ..threads import reply_thread_ts
from ..workspaces import Workspace


@dataclass
class StopSignal:
    """Set by the queue when someone asks (`!stop`, the Stop button) to stop one running turn."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    by: str = ""

    def set(self, user_id: str) -> None:
        if not self.requested.is_set():
            self.by = user_id
            self.requested.set()


@dataclass(frozen=True)
class TurnContext:
    """One item's turn: the item, its workspace and channel settings, the reply's target, the stop."""

    item: QueueItem
    workspace: Workspace
    settings: ChannelSettings
    target: ReplyTarget
    stop: StopSignal
    started: float
    """When the turn started (`time.monotonic()`), for its metrics."""

    @classmethod
    async def for_item(cls, item: QueueItem, workspace: Workspace, stop: StopSignal, started: float) -> TurnContext:
        """The item's turn, with its channel's settings as they are now."""
        target = ReplyTarget(
            channel_id=item.thread.channel_id,
            thread_ts=reply_thread_ts(item.thread),
            team_id=await workspace.team_of(item.user_id),
            user_id=item.user_id,
        )
        return cls(item, workspace, await workspace.settings_for(item.thread.channel_id), target, stop, started)

    @property
    def thread(self) -> ThreadKey:
        return self.item.thread

    @property
    def message(self) -> InboxMessage:
        return self.item.as_message()

    @property
    def stop_value(self) -> str:
        """What this turn's Stop button carries: the turn it stops, and its thread."""
        return stop_value(self.item)

    async def say(self, text: str) -> None:
        """A message in the thread; a failure is a log line."""
        await say(self.workspace.client, self.target.channel_id, self.target.thread_ts, text)

    async def tell_asker(self, text: str) -> None:
        """A note only the person who asked sees (ephemeral), in the thread."""
        target = self.target
        await tell_privately(self.workspace.client, target.channel_id, self.item.user_id, target.thread_ts, text)

    async def say_problems(self, heading: str, problems: list[str]) -> None:
        await say_problems(self.workspace.client, self.target.channel_id, self.target.thread_ts, heading, problems)


def stop_value(item: QueueItem) -> str:
    """What a Stop button carries: the turn it stops, and its thread."""
    return thread_value(item.thread, item=item.id)
