"""What was said in a thread before the bot was first mentioned in it, and by whom."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Protocol

from storage import ThreadKey

from ..errors import SLACK_ERRORS
from ..threads import plain_text
from ..workspaces import Workspace

logger = logging.getLogger(__name__)

# Enough for a discussion or an alert with its replies, without crowding out the request.
MAX_CONTEXT_CHARS = 8_000
# The thread's first message (the alert, the question) is kept up to this many characters.
MAX_ROOT_CHARS = 2_000
PAGE_SIZE = 200
# conversations.replies pages oldest first: a very long thread is read up to this many pages.
MAX_PAGES = 25
LEFT_OUT = "…(earlier messages left out)"


class Names(Protocol):
    """Display names of Slack users (`AccessControl` keeps them with what else it knows of people)."""

    async def name(self, user_id: str) -> str: ...


async def earlier_messages(workspace: Workspace, thread: ThreadKey, before_ts: str) -> str:
    """The thread's first message and the most recent others before `before_ts`, each with its
    author's name, within `MAX_CONTEXT_CHARS`.

    Lets "@threadbox summarize this" work in a thread the bot joins late. Best effort: a
    thread Slack will not show (missing scope, deleted) gives none, not an error.
    """
    slack, bot_user_id, names = workspace.client, workspace.bot_user_id, workspace.access
    root: dict[str, Any] | None = None
    recent: deque[dict[str, Any]] = deque()
    size, left_out = 0, False
    cursor: str | None = None
    try:
        for _ in range(MAX_PAGES):
            response = await slack.conversations_replies(
                channel=thread.channel_id, ts=thread.thread_ts, latest=before_ts, inclusive=False,
                limit=PAGE_SIZE, cursor=cursor,
            )
            for message in response.get("messages") or []:
                if message.get("ts") == thread.thread_ts:
                    root = message
                elif message.get("user") != bot_user_id and message.get("ts") != before_ts:
                    recent.append(message)
                    size += _length(message)
                    while size > MAX_CONTEXT_CHARS - MAX_ROOT_CHARS and recent:
                        size -= _length(recent.popleft())
                        left_out = True
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        else:
            left_out = True
    except SLACK_ERRORS as error:
        logger.info("no earlier messages for %s: %s", thread, error)
        return ""
    lines = []
    if root is not None and root.get("user") != bot_user_id and await _may_be_read(root, workspace, thread):
        lines.append(await _line(root, names, MAX_ROOT_CHARS))
    if left_out:
        lines.append(LEFT_OUT)
    lines.extend([await _line(message, names) for message in recent if await _may_be_read(message, workspace, thread)])
    return "\n".join(lines)


async def channel_messages(workspace: Workspace, channel_id: str, before_ts: str) -> str:
    """A channel's most recent top-level messages before `before_ts`, oldest first, each with its
    author's name, within `MAX_CONTEXT_CHARS`. Best effort, as `earlier_messages`."""
    try:
        response = await workspace.client.conversations_history(channel=channel_id, latest=before_ts, limit=PAGE_SIZE)
    except SLACK_ERRORS as error:
        logger.info("no recent messages for %s: %s", channel_id, error)
        return ""
    thread = ThreadKey(workspace.team_id, channel_id, "")
    kept: list[dict[str, Any]] = []
    size = 0
    for message in response.get("messages") or []:  # newest first
        if message.get("user") == workspace.bot_user_id or not await _may_be_read(message, workspace, thread):
            continue
        size += _length(message)
        if size > MAX_CONTEXT_CHARS:
            break
        kept.append(message)
    return "\n".join([await _line(message, workspace.access, MAX_ROOT_CHARS) for message in reversed(kept)])


async def _may_be_read(message: dict[str, Any], workspace: Workspace, thread: ThreadKey) -> bool:
    """What people the policy refuses (guests, other organisations…) wrote never reaches the
    model; apps' posts (alerts) do."""
    if message.get("bot_id") or not message.get("user"):
        return True
    return (await workspace.access.check(str(message["user"]), thread.channel_id)).allowed


async def _line(message: dict[str, Any], names: Names, limit: int | None = None) -> str:
    text = plain_text(message.get("text") or "(no text)")
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{await _author(message, names)}: {text}"


async def _author(message: dict[str, Any], names: Names) -> str:
    if message.get("user") and not message.get("bot_id"):
        return await names.name(str(message["user"]))
    bot = message.get("bot_profile") or {}
    return str(bot.get("name") or message.get("username") or message.get("bot_id") or "someone")


def _length(message: dict[str, Any]) -> int:
    # A name is rarely longer than this; the exact figure does not matter for a budget.
    return len(message.get("text") or "") + 24
