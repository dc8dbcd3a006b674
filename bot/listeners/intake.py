"""What every listener hands its work to: the queue, the store, the Home tab."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt.context.async_context import AsyncBoltContext

from storage import InboxMessage, Store

from ..installs.uninstall import Uninstalls
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
    uninstalls: Uninstalls


async def opens_conversation(workspace: Workspace, message: InboxMessage) -> bool:
    """Whether the person may use threadbox there: what the legacy assistant view asks before
    titling a new thread (a thread itself becomes the bot's when its first turn lets its
    person in)."""
    return (await workspace.access.check(message.user_id, message.thread.channel_id)).allowed


def team_id_of(context: AsyncBoltContext) -> str:
    """What the request's data is kept under: its install's workspace (or, for an org-wide
    install, the organisation), as the workspace seam found it."""
    workspace = context.get("workspace")
    if isinstance(workspace, Workspace):
        return workspace.team_id
    return payloads.string(context, "team_id") or payloads.string(context, "enterprise_id") or ""
