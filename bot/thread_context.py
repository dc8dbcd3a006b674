"""What was said in a thread before the bot was first mentioned in it."""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from storage import ThreadKey

from .reply import SLACK_ERRORS
from .threads import plain_text

logger = logging.getLogger(__name__)

# Enough for a discussion or an alert with its replies, without crowding out the request.
MAX_CONTEXT_CHARS = 8_000
MAX_CONTEXT_MESSAGES = 100


async def earlier_messages(slack: AsyncWebClient, thread: ThreadKey, before_ts: str, bot_user_id: str) -> str:
    """Other people's (and bots') messages in the thread before `before_ts`, newest kept.

    Lets "@threadbox summarize this" work in a thread the bot joins late. Best effort: a
    thread Slack will not show (missing scope, deleted) gives no context, not an error.
    """
    try:
        response = await slack.conversations_replies(
            channel=thread.channel_id, ts=thread.thread_ts, limit=MAX_CONTEXT_MESSAGES
        )
    except SLACK_ERRORS as error:
        logger.info("no thread context for %s: %s", thread, error)
        return ""
    lines: list[str] = []
    for message in response.get("messages") or []:
        if _ts_key(str(message.get("ts", ""))) >= _ts_key(before_ts) or message.get("user") == bot_user_id:
            continue
        author = message.get("user") or message.get("bot_id") or "someone"
        lines.append(f"<@{author}>: {plain_text(message.get('text') or '(no text)')}")
    kept: list[str] = []
    total = 0
    for line in reversed(lines):
        total += len(line) + 1
        if total > MAX_CONTEXT_CHARS:
            kept.append("…(earlier messages left out)")
            break
        kept.append(line)
    return "\n".join(reversed(kept))


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = ts.partition(".")
    try:
        return int(seconds), int(micros or 0)
    except ValueError:
        return (0, 0)
