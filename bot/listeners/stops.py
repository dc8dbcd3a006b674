"""Stopping a running turn: `!stop` (or `@threadbox stop`) and the Stop button. Never queued
behind the turn it stops."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from storage import InboxMessage, ThreadKey

from ..outbound.blocks import STOP_ACTION_ID
from ..outbound.notices import tell_privately
from ..threads import is_stop_command
from ..workspaces import Workspace
from .buttons import thread_button
from .intake import Intake
from .payloads import ButtonFields, Tell
from .thread_actions import NOTHING_TO_STOP_NOTE, request_stop

ALREADY_FINISHED_NOTE = "That answer has already finished."


async def handled_as_stop(intake: Intake, workspace: Workspace, message: InboxMessage) -> bool:
    """Whether the message is `!stop` (which is then answered at once, never queued)."""
    if not is_stop_command(message.text, workspace.bot_user_id):
        return False
    await stop_from_message(intake, workspace, message)
    return True


async def stop_from_message(intake: Intake, workspace: Workspace, message: InboxMessage) -> None:
    """`!stop`: an ephemeral word when there is nothing to stop (or it may not)."""
    outcome = await request_stop(
        intake.queue, workspace.access, message.thread, message.user_id, message_ts=message.message_ts
    )
    if outcome in ("stopping", "duplicate"):
        return
    text = NOTHING_TO_STOP_NOTE if outcome == "idle" else outcome
    thread = message.thread
    await tell_privately(workspace.client, thread.channel_id, message.user_id, thread.thread_ts or None, text)


def register(app: AsyncApp, intake: Intake) -> None:
    preamble = thread_button("That button is out of date.", replace_original=False, names_turn=True)

    @app.action(STOP_ACTION_ID, middleware=[preamble])
    async def on_stop_button(workspace: Workspace, button: ButtonFields, thread: ThreadKey, tell: Tell) -> None:
        fields = button
        outcome = await request_stop(intake.queue, workspace.access, thread, fields.user_id, item_id=fields.item_id)
        if outcome == "stopping":
            return
        await tell(ALREADY_FINISHED_NOTE if outcome == "idle" else outcome, replace_original=False)
