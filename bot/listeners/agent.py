"""Slack's Agent messaging experience (`agent_view`): prompts when a person opens the app's
Messages tab, what they look at beside it, and Slack's own stop control on an answer.

Under `agent_view` Slack sends no `assistant_thread_started`; opening the DM is an
`app_home_opened` event with `tab == "messages"`, and suggested prompts must be set without a
`thread_ts` (Slack drops the call silently otherwise).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from storage import ThreadKey

from ..errors import SLACK_ERRORS
from ..workspaces import Workspace
from . import payloads
from .intake import Intake, team_id_of
from .thread_actions import request_stop

logger = logging.getLogger(__name__)

CONTEXT_CHANGED_EVENT = "app_context_changed"
STREAM_STOPPED_EVENT = "message_stream_stopped"
SESSION_STOPPED_EVENT = "agent_session_stopped"
AGENT_EVENTS = (CONTEXT_CHANGED_EVENT, STREAM_STOPPED_EVENT, SESSION_STOPPED_EVENT)

PROMPTS_TITLE = "Try one of these:"
SUGGESTED_PROMPTS = [
    {"title": "Analyze a file", "message": "I'll attach a CSV: summarize it and chart the most interesting columns."},
    {"title": "Run some Python", "message": "Compute the first 50 prime numbers and show me the code you ran."},
    {"title": "Make a chart", "message": "Plot sin(x) and cos(x) from 0 to 2π and send me the PNG."},
    {"title": "Summarize this thread", "message": "Summarize this thread: the decisions and who owns what."},
]


async def offer_prompts(workspace: Workspace, channel_id: str) -> None:
    """The Messages tab's suggested prompts (no `thread_ts` under `agent_view`); best effort."""
    try:
        await workspace.client.assistant_threads_setSuggestedPrompts(
            channel_id=channel_id, prompts=SUGGESTED_PROMPTS, title=PROMPTS_TITLE
        )
    except SLACK_ERRORS as error:
        logger.warning("could not offer suggested prompts: %s", error)


def register(app: AsyncApp, intake: Intake) -> None:
    @app.event(CONTEXT_CHANGED_EVENT)
    async def on_context_changed(
        ack: AsyncAck, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Remember what the person looks at, for a DM about "this channel" or "this thread"."""
        await ack()
        user_id = payloads.viewer(body, event)
        if user_id is None:
            payloads.ignore_malformed(CONTEXT_CHANGED_EVENT)
            return
        team_id = team_id_of(context)
        await intake.store.set_viewing(team_id, user_id, payloads.viewed(event, team_id))

    async def on_stopped(
        ack: AsyncAck, event: dict[str, Any], context: AsyncBoltContext, workspace: Workspace
    ) -> None:
        """Slack's own stop on an answer ends its turn as `!stop` does."""
        await ack()
        stopped = payloads.stream_stopped(event)
        if stopped is None:
            payloads.ignore_malformed(str(event.get("type")))
            return
        found = await stopped_turn(intake, team_id_of(context), stopped)
        if found is None:
            return  # that answer has finished already, or the event names no one
        thread, user_id = found
        outcome = await request_stop(intake.queue, workspace.access, thread, user_id, message_ts=stopped.message_ts)
        logger.info("Slack's stop in %s: %s", thread, outcome)

    app.event(STREAM_STOPPED_EVENT)(on_stopped)
    app.event(SESSION_STOPPED_EVENT)(on_stopped)


async def stopped_turn(intake: Intake, team_id: str, stopped: payloads.StreamStopped) -> tuple[ThreadKey, str] | None:
    """The thread of the answer Slack's stop names, and who stopped it: by the reply message
    being written (whose recipient pressed stop, unless the event names someone), or by the
    thread and the person the event names."""
    if stopped.message_ts:
        found = await intake.store.reply_thread(team_id, stopped.channel_id, stopped.message_ts)
        if found is not None:
            return found[0], stopped.user_id or found[1]
    if stopped.thread_ts and stopped.user_id:
        return ThreadKey(team_id, stopped.channel_id, stopped.thread_ts), stopped.user_id
    return None
