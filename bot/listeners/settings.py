"""`/threadbox`: `settings` opens the channel's settings modal (editable by those who may change
them, read-only for the rest), `help` lists the commands; the modal's submission, and the
Home tab's *Edit* buttons that open it for any channel."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError, SlackRequestError

from storage import ThreadKey

from ..channels.keys import read_keys
from ..errors import slack_error
from ..model.catalog import KNOWN_PRICES
from ..ops.logs import audit
from ..outbound.blocks import EDIT_SETTINGS_ACTION_ID, section
from ..outbound.home import Notice
from ..outbound.settings_view import SETTINGS_VIEW_ID, metadata, settings_modal, submitted_keys
from ..outbound.text import escape_mrkdwn
from ..threads import is_dm
from ..workspaces import Workspace
from . import payloads
from .intake import Intake, team_id_of

logger = logging.getLogger(__name__)

THREADBOX_COMMAND = "/threadbox"
HELP = """*threadbox* gives every thread its own Claude code-execution container. Mention @threadbox \
in a channel (or write to it in a DM) and every reply in that thread continues in the same container.

*In a thread* (type it as the whole message, or after mentioning @threadbox):
• `!stop` stops the answer being written (so does the stop control on the answer)
• `!reset` gives the thread a fresh container and an empty history
• `!usage` shows what the thread and you have used, and what your running turns have reserved
• `!files` lists the files the thread has seen (`!files all`: Claude lists the whole container)
• `!export` uploads the thread as a Jupyter notebook, and a zip of it with its files
• `!fork` starts a new thread that goes on from here, in a container of its own
• `!schedule <when> <request>` runs a request again on time (`every day at 09:00 …`); `!schedules` lists them

*Commands*
• `/threadbox settings`: this channel's settings (model, instructions, tools, follow-ups, budget)
• `/threadbox help`: this list
• `/reset`: a fresh container for this DM, or for the thread you link (`/reset <link>`)

The *Reset container* message shortcut resets the thread of any message; the Home tab lists your threads."""
NOT_IN_CHANNEL_NOTE = "You can only see the settings of channels you are in."
OPEN_FAILED_NOTE = "Slack did not open the settings ({error}); please run `/threadbox settings` again."
UNKNOWN_NOTE = "I don't know `/threadbox {word}`.\n\n"
OUT_OF_DATE_VIEW = "These settings are out of date or not yours to change; nothing was saved."


def register(app: AsyncApp, intake: Intake) -> None:
    @app.command(THREADBOX_COMMAND)
    async def on_threadbox(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext, workspace: Workspace
    ) -> None:
        await ack()
        tell = payloads.safe(respond, command)
        fields = payloads.command_fields(command)
        trigger_id = command.get("trigger_id")
        if fields is None or not isinstance(trigger_id, str):
            await tell(payloads.UNREADABLE_NOTE)
            return
        word = (fields.text.split() or ["help"])[0].lower()
        if word == "settings":
            problem = await open_settings(workspace, team_id_of(context), fields.channel_id, fields.user_id, trigger_id)
            if problem:
                await tell(problem)
        elif word == "help":
            await tell(HELP)
        else:
            await tell(UNKNOWN_NOTE.format(word=escape_mrkdwn(word)) + HELP)

    @app.action(EDIT_SETTINGS_ACTION_ID)
    async def on_edit_button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any],
                             context: AsyncBoltContext, workspace: Workspace) -> None:
        """The Home tab's *Edit* on a channel's settings (shown to admins)."""
        await ack()
        team_id, user_id = team_id_of(context), payloads.button_user(body)
        channel_id, trigger_id = action.get("value"), body.get("trigger_id")
        if user_id is None or not isinstance(channel_id, str) or not isinstance(trigger_id, str):
            payloads.ignore_malformed("settings button")
            return
        problem = await open_settings(workspace, team_id, channel_id, user_id, trigger_id)
        if problem:
            await intake.home.publish(workspace, team_id, user_id, Notice(problem))

    @app.view(SETTINGS_VIEW_ID)
    async def on_settings_saved(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any],
                                context: AsyncBoltContext, workspace: Workspace) -> None:
        team_id, user_id = team_id_of(context), payloads.button_user(body)
        about = metadata(view)
        if (
            user_id is None or about is None or about[0] != team_id
            or not await workspace.access.may_change_settings(user_id, about[1])
        ):
            audit("refused", reason="settings", user=user_id, team=team_id, channel=about[1] if about else None)
            await ack(response_action="update", view=notice_view(OUT_OF_DATE_VIEW))
            return
        channel_id = about[1]
        book = workspace.channels
        layers = await book.layers(team_id, channel_id)
        raw = {key: value for key, value in submitted_keys(view).items() if getattr(layers.file, key) is None}
        keys, problems = read_keys(raw, skills=book.skill_names)
        if keys.model is not None and (refused := await book.catalog.problem(keys.model)):
            problems.append(("model", refused))
        if problems:
            await ack(response_action="errors", errors={key: problem[:150] for key, problem in problems})
            return
        await ack()
        before = await intake.store.keep_channel_settings(team_id, layers.entry, keys.to_json(), user_id)
        audit(
            "channel_settings", user=user_id, team=team_id, channel=layers.entry,
            before=json.dumps(before.values if before else {}, sort_keys=True),
            after=json.dumps(keys.to_json(), sort_keys=True),
        )


async def open_settings(
    workspace: Workspace, team_id: str, channel_id: str, user_id: str, trigger_id: str
) -> str | None:
    """Open the channel's settings for this person; words for them when it cannot be."""
    access = workspace.access
    editable = await access.may_change_settings(user_id, channel_id)
    if not editable and not is_dm(channel_id) and not await access.can_see(user_id, ThreadKey(team_id, channel_id, "")):
        return NOT_IN_CHANNEL_NOTE
    book = workspace.channels
    layers = await book.layers(team_id, channel_id)
    models = list(dict.fromkeys([book.base.model, *KNOWN_PRICES]))
    view = settings_modal(
        layers, channel_id=channel_id, team_id=team_id, editable=editable, models=models, skills=list(book.skill_names),
    )
    try:
        await workspace.client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as error:
        logger.warning("views.open failed: %s", error)
        return OPEN_FAILED_NOTE.format(error=slack_error(error))
    except SlackRequestError as error:
        logger.warning("views.open failed: %s", error)
        return OPEN_FAILED_NOTE.format(error=error)
    return None


def notice_view(text: str) -> dict[str, Any]:
    return {
        "type": "modal", "title": {"type": "plain_text", "text": "threadbox"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [section(text)],
    }
