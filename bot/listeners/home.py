"""The Home tab: built after Slack is acknowledged (a lazy listener), and its Reset buttons."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from storage import ThreadKey

from ..outbound.blocks import HOME_RESET_ACTION_ID
from ..outbound.home import Notice
from ..workspaces import Workspace
from . import payloads
from .agent import offer_prompts
from .intake import Intake, team_id_of
from .thread_actions import request_reset

HOME_OPENED_EVENT = "app_home_opened"
OUT_OF_DATE_BUTTON_NOTE = "That button is out of date; here is your Home tab as it is now."


def register(app: AsyncApp, intake: Intake) -> None:
    async def publish_home_tab(event: dict[str, Any], context: AsyncBoltContext, workspace: Workspace) -> None:
        opened = payloads.home_opened(event)
        if opened is None:
            payloads.ignore_malformed(HOME_OPENED_EVENT)
            return
        if opened.tab == "home":
            await intake.home.publish(workspace, team_id_of(context), opened.user_id)
        elif opened.tab == "messages" and opened.channel_id:  # the DM, as `agent_view` opens it
            await offer_prompts(workspace, opened.channel_id)

    # Nothing to store: Slack is acknowledged at once and the tab is built after (a lazy
    # listener), however many channels it has to look at.
    app.event(HOME_OPENED_EVENT)(ack=_acknowledge, lazy=[publish_home_tab])

    @app.action(HOME_RESET_ACTION_ID)
    async def on_home_reset_button(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext, workspace: Workspace
    ) -> None:
        """A Home tab button carries no response_url: the outcome shows on the republished tab."""
        await ack()
        team_id = team_id_of(context)
        user_id = payloads.button_user(body)
        if user_id is None:
            payloads.ignore_malformed("Home tab button")
            return
        fields = payloads.reset_button_fields(action, body)
        if fields is None:
            await intake.home.publish(workspace, team_id, user_id, Notice(OUT_OF_DATE_BUTTON_NOTE))
            return
        thread = ThreadKey(team_id, fields.channel_id, fields.thread_ts)
        answer = await request_reset(intake.queue, intake.store, workspace.access, thread, user_id, response_url=None)
        notice = Notice(answer.text or "", thread if answer.queued else None)
        await intake.home.publish(workspace, team_id, user_id, notice)


async def _acknowledge(ack: AsyncAck) -> None:
    await ack()
