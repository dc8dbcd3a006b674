"""The assistant view (`assistant_view`, Slack's split view of apps installed before
`agent_view`): a greeting with suggested prompts, and the person's messages into the queue like
any DM. New installs use `agent_view` (`agent.py`); these events keep older installs working."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import AsyncSetSuggestedPrompts
from slack_bolt.context.set_title.async_set_title import AsyncSetTitle

from ..errors import SLACK_ERRORS
from ..workspaces import Workspace
from . import payloads
from .agent import PROMPTS_TITLE, SUGGESTED_PROMPTS
from .intake import Intake, opens_conversation
from .messages import inbox_message
from .stops import handled_as_stop

logger = logging.getLogger(__name__)

# Bolt's Assistant middleware handles these, for the app's assistant view.
ASSISTANT_EVENTS = ("assistant_thread_started", "assistant_thread_context_changed")
ASSISTANT_GREETING = (
    "Hi! I write and run code for you in a sandbox that stays with this thread: files and"
    " state carry over from one message to the next. Ask for an analysis, attach files, or"
    " pick a prompt below."
)


def register(app: AsyncApp, intake: Intake) -> None:
    assistant = AsyncAssistant()

    @assistant.thread_started
    async def on_assistant_thread_started(
        payload: dict[str, Any], say: AsyncSay, set_suggested_prompts: AsyncSetSuggestedPrompts
    ) -> None:
        if payloads.assistant_thread(payload) is None:
            payloads.ignore_malformed("assistant_thread_started")
            return
        try:
            await say(ASSISTANT_GREETING)
            await set_suggested_prompts(prompts=SUGGESTED_PROMPTS, title=PROMPTS_TITLE)
        except SLACK_ERRORS as error:
            logger.warning("could not greet a new assistant thread: %s", error)

    @assistant.thread_context_changed
    async def on_assistant_context_changed(payload: dict[str, Any]) -> None:
        """The channel a person views beside the assistant; threadbox does not use it."""
        logger.debug("assistant thread context changed")

    @assistant.user_message
    async def on_assistant_message(
        payload: dict[str, Any], context: AsyncBoltContext, set_title: AsyncSetTitle, workspace: Workspace
    ) -> None:
        message = inbox_message(payload, context, workspace)
        if message is None or await handled_as_stop(intake, workspace, message):
            return
        is_new = not await intake.store.has_conversation(message.thread)
        queued = await intake.queue.submit(message, addressed=True)
        if queued and is_new and await opens_conversation(workspace, message):
            try:  # the message is stored: a title Slack refuses must not make it send the event again
                await set_title(thread_title(message.text))
            except SLACK_ERRORS as error:
                logger.warning("could not title an assistant thread: %s", error)

    app.use(assistant)


def thread_title(text: str, limit: int = 60) -> str:
    """An assistant thread's title: the start of its first message."""
    line = " ".join(text.split()) or "New conversation"
    return line if len(line) <= limit else line[: limit - 1] + "…"
