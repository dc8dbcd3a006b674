"""Resetting a thread from outside it: `/reset` (a link, a DM, or the picker of one's threads
in a channel), the picker's buttons, and the *Reset container* message shortcut."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond

from storage import ThreadKey

from ..ops.logs import audit
from ..outbound.blocks import RESET_ACTION_ID, thread_picker
from ..threads import is_dm, thread_from_link, thread_of
from ..workspaces import Workspace
from . import payloads
from .buttons import thread_button
from .intake import Intake, team_id_of
from .payloads import ButtonFields, Tell
from .thread_actions import request_reset

RESET_SHORTCUT_ID = "reset_container"
RESET_COMMAND = "/reset"
MAX_LISTED_THREADS = 10
NOT_A_LINK_NOTE = (
    "That doesn't look like a link to a thread. Use *Copy link* on a message in the thread, then `/reset <link>`."
)


def register(app: AsyncApp, intake: Intake) -> None:
    queue, store = intake.queue, intake.store

    @app.command(RESET_COMMAND)
    async def on_reset_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext, workspace: Workspace
    ) -> None:
        await ack()
        fields = payloads.command_fields(command)
        if fields is None:
            await payloads.respond_safely(respond, command, payloads.UNREADABLE_NOTE)
            return
        tell = payloads.safe(respond, command)
        team_id, channel_id, user_id, text = team_id_of(context), fields.channel_id, fields.user_id, fields.text
        response_url = payloads.response_url(command)
        access = workspace.access
        if text:
            thread = thread_from_link(team_id, text)
            if thread is None:
                await tell(NOT_A_LINK_NOTE)
                return
            answer = await request_reset(queue, store, access, thread, user_id, response_url)
        elif is_dm(channel_id):
            dm = ThreadKey(team_id, channel_id, "")
            answer = await request_reset(queue, store, access, dm, user_id, response_url)
        else:
            decision = await access.check(user_id, channel_id)
            if not decision.allowed:
                audit("refused", reason=decision.reason, user=user_id, team=team_id, channel=channel_id, action="reset")
                await tell(decision.note)
                return
            threads = await store.active_threads(team_id, channel_id, user_id, MAX_LISTED_THREADS)
            await tell(**thread_picker(threads, workspace.bot_user_id))
            return
        if answer.text:
            await tell(answer.text)

    preamble = thread_button("That button is out of date; run `/reset` again.", replace_original=True)

    @app.action(RESET_ACTION_ID, middleware=[preamble])
    async def on_reset_button(
        body: dict[str, Any], workspace: Workspace, button: ButtonFields, thread: ThreadKey, tell: Tell
    ) -> None:
        answer = await request_reset(
            queue, store, workspace.access, thread, button.user_id, payloads.response_url(body), replace_original=True
        )
        if answer.text:
            await tell(answer.text, replace_original=True)

    @app.shortcut(RESET_SHORTCUT_ID)
    async def on_reset_shortcut(
        ack: AsyncAck, shortcut: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext, workspace: Workspace
    ) -> None:
        await ack()
        tell = payloads.safe(respond, shortcut)
        fields = payloads.shortcut_fields(shortcut)
        if fields is None:
            await tell("I couldn't tell which thread this message belongs to.")
            return
        thread = thread_of(team_id_of(context), fields.message)
        answer = await request_reset(
            queue, store, workspace.access, thread, fields.user_id, payloads.response_url(shortcut)
        )
        if answer.text:
            await tell(answer.text)
