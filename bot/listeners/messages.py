"""Messages into the queue: mentions, messages in the bot's threads and DMs, and `!stop`."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from storage import InboxMessage

from ..threads import is_dm, mentions, thread_of
from ..workspaces import Workspace
from . import payloads
from .intake import Intake, team_id_of
from .stops import handled_as_stop

# Message subtypes that are a person talking; edits, joins, deletions and bot posts are not.
ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}
MENTION_EVENT = "app_mention"
MESSAGE_EVENT = "message"


def register(app: AsyncApp, intake: Intake) -> None:
    @app.event(MENTION_EVENT)
    async def on_mention(event: dict[str, Any], context: AsyncBoltContext, workspace: Workspace) -> None:
        message = inbox_message(event, context, workspace)
        if message is None or await handled_as_stop(intake, workspace, message):
            return
        await intake.queue.submit(message, addressed=True)

    @app.event(MESSAGE_EVENT)
    async def on_message(event: dict[str, Any], context: AsyncBoltContext, workspace: Workspace) -> None:
        message = inbox_message(event, context, workspace)
        if message is None:
            return
        bot_user_id = workspace.bot_user_id
        # A mention's app_mention twin may arrive first or not at all; the queue accepts the
        # message once, whichever comes.
        addressed = is_dm(event["channel"], event.get("channel_type")) or mentions(message.text, bot_user_id)
        in_our_thread = (
            not addressed and bool(event.get("thread_ts")) and await intake.store.has_conversation(message.thread)
        )
        if not (addressed or in_our_thread):
            return
        if await handled_as_stop(intake, workspace, message):
            return
        if in_our_thread and (await workspace.settings_for(message.thread.channel_id)).follow_ups == "mention":
            await intake.store.add_note(message)  # context for the next message that mentions the bot
        else:
            await intake.queue.submit(message, addressed=addressed)


def is_from_a_person(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Never answer bots (ourselves included) or edits, joins and other housekeeping."""
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    if event.get("subtype") not in ANSWERED_SUBTYPES:
        return False
    return bool(event.get("user")) and event.get("user") != bot_user_id


def inbox_message(event: dict[str, Any], context: AsyncBoltContext, workspace: Workspace) -> InboxMessage | None:
    """The message a person sent, or None for bots, housekeeping and malformed payloads."""
    if not payloads.is_well_formed_message(event):
        payloads.ignore_malformed("message event")
        return None
    if not is_from_a_person(event, workspace.bot_user_id):
        return None
    return InboxMessage(
        thread=thread_of(team_id_of(context), event),
        message_ts=event["ts"],
        user_id=str(event["user"]),
        text=str(event.get("text") or ""),
        files=payloads.shared_files(event),
    )
