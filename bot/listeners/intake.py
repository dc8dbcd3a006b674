"""What every listener hands its work to: the queue, the store, the Home tab."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt.context.async_context import AsyncBoltContext

from storage import InboxMessage, Store

from ..ops.metrics import Metrics
from ..outbound.home import HomeTab
from ..queue import TurnQueue
from ..schedules.clock import ScheduleClock
from ..workspaces import Workspace
from . import payloads


@dataclass(frozen=True)
class Intake:
    queue: TurnQueue
    store: Store
    home: HomeTab
    metrics: Metrics
    clock: ScheduleClock


async def opens_conversation(workspace: Workspace, message: InboxMessage) -> bool:
    """Whether the person may use threadbox there: what the legacy assistant view asks before
    titling a new thread (a thread itself becomes the bot's when its first turn lets its
    person in)."""
    return (await workspace.access.check(message.user_id, message.thread.channel_id)).allowed


def team_id_of(context: AsyncBoltContext) -> str:
    """The workspace (or, for org-wide installs, the organisation) a payload came from."""
    return payloads.string(context, "team_id") or payloads.string(context, "enterprise_id") or ""
