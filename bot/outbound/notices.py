"""Words to people outside a reply: a message in a thread, a list of problems, an ephemeral
note, and an answer through a `response_url`. Each is best effort: a failure is a log line."""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from ..errors import SLACK_ERRORS

logger = logging.getLogger(__name__)


async def say(client: AsyncWebClient, channel_id: str, thread_ts: str | None, text: str) -> None:
    """A message in the thread (or at the top level of a DM)."""
    try:
        await client.chat_postMessage(channel=channel_id, thread_ts=thread_ts, text=text)
    except SLACK_ERRORS as error:
        logger.error("could not post to %s: %s", channel_id, error)


async def say_problems(
    client: AsyncWebClient, channel_id: str, thread_ts: str | None, heading: str, problems: list[str]
) -> None:
    """One message listing what went wrong, when anything did."""
    if problems:
        await say(client, channel_id, thread_ts, ":warning: " + "\n• ".join([heading, *problems]))


async def tell_privately(
    client: AsyncWebClient, channel_id: str, user_id: str, thread_ts: str | None, text: str
) -> None:
    """An ephemeral note only `user_id` sees."""
    try:
        await client.chat_postEphemeral(channel=channel_id, user=user_id, thread_ts=thread_ts, text=text)
    except SLACK_ERRORS as error:
        logger.info("could not tell %s: %s", user_id, error)


async def tell_requester(response_url: str, text: str, replace_original: bool) -> None:
    """An ephemeral answer through a command's, shortcut's or button's `response_url`."""
    try:
        response = await AsyncWebhookClient(response_url).send(
            text=text, response_type="ephemeral", replace_original=replace_original
        )
    except (TimeoutError, OSError, aiohttp.ClientError) as error:
        logger.warning("could not answer through response_url: %s", error)
        return
    if response.status_code != 200:
        logger.warning("response_url answered %s: %s", response.status_code, response.body)
