"""Which conversation a Slack message belongs to, and the small text rules around it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlparse

from storage import ThreadKey

_LINK = re.compile(r"<?(https?://[^\s|>]+)(?:\|[^>]*)?>?")
_SLACK_TS = re.compile(r"\d+\.\d+")
_PERMALINK_PATH = re.compile(r"/archives/(?P<channel>[A-Z0-9]+)/p(?P<ts>\d{16})")


def is_slack_message(ts: str) -> bool:
    """A Slack message's ts (`1700000000.000100`), not a queued item's own name (a scheduled run's)."""
    return _SLACK_TS.fullmatch(ts) is not None


def is_dm(channel_id: str, channel_type: str | None = None) -> bool:
    return channel_type == "im" or (channel_type is None and channel_id.startswith("D"))


def thread_of(team_id: str, event: dict[str, Any]) -> ThreadKey:
    """A thread reply belongs to its thread; a channel message starts one; top-level DMs share one."""
    channel = event["channel"]
    thread_ts = event.get("thread_ts")
    if thread_ts:
        return ThreadKey(team_id, channel, thread_ts)
    if is_dm(channel, event.get("channel_type")):
        return ThreadKey(team_id, channel, "")
    return ThreadKey(team_id, channel, event["ts"])


def reply_thread_ts(thread: ThreadKey) -> str | None:
    """Where replies go: in the thread, or at the top level of a DM."""
    return thread.thread_ts or None


def _mention(bot_user_id: str) -> re.Pattern[str]:
    """`<@UBOT>` or `<@UBOT|name>`, and not `<@UBOT2>`."""
    return re.compile(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>")


def mentions(text: str, bot_user_id: str) -> bool:
    return _mention(bot_user_id).search(text) is not None


def strip_mention(text: str, bot_user_id: str) -> str:
    """The message without the bot's own mention(s)."""
    return _mention(bot_user_id).sub("", text).strip()


def plain_text(text: str) -> str:
    """Undo Slack's escaping of `&`, `<` and `>`, so code reaches Claude as it was typed."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def is_command(text: str, bot_user_id: str, word: str) -> bool:
    """`!word`, or `@threadbox word`, as the whole message."""
    if text.strip().lower().rstrip(".!?") == f"!{word}":
        return True
    return mentions(text, bot_user_id) and strip_mention(text, bot_user_id).lower().rstrip(".!?") in (word, f"!{word}")


def command_text(text: str, bot_user_id: str, word: str) -> str | None:
    """What follows `!word ` (or `@threadbox word `) at the start of the message, or None."""
    mentioned = mentions(text, bot_user_id)
    head, _, rest = (strip_mention(text, bot_user_id) if mentioned else text).strip().partition(" ")
    words = (f"!{word}", word) if mentioned else (f"!{word}",)
    return rest.strip() if head.lower() in words and rest.strip() else None


def is_stop_command(text: str, bot_user_id: str) -> bool:
    """Stops the thread's running turn; never queued behind it."""
    return is_command(text, bot_user_id, "stop")


def thread_from_link(team_id: str, text: str) -> ThreadKey | None:
    """The thread a Slack message link (as pasted into `/reset <link>`) points at."""
    match = _LINK.search(text.strip())
    if not match:
        return None
    url = urlparse(match.group(1))
    path = _PERMALINK_PATH.search(url.path)
    if not path:
        return None
    digits = path.group("ts")
    # A reply's link names its thread in `thread_ts`; a thread's first message is the thread.
    thread_ts = parse_qs(url.query).get("thread_ts", [f"{digits[:10]}.{digits[10:]}"])[0]
    return ThreadKey(team_id, path.group("channel"), thread_ts)
