"""Reading Slack payloads defensively: the fields a listener uses, or None when they are unusable.

Slack answers a 5xx with retries and counts it against the app, so a malformed request is
answered 200 (or with a polite note where a `response_url` exists) and logged in one line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond

from storage import ThreadKey

from ..errors import SLACK_ERRORS
from ..threads import is_dm

logger = logging.getLogger(__name__)

UNREADABLE_NOTE = "Sorry, I couldn't read that request from Slack. Please try again."


def string(data: object, key: str) -> str | None:
    """`data[key]` when `data` is a dict and the value a non-empty string."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def shared_channel(context: object, body: object) -> tuple[str, bool] | None:
    """The channel a request may share with another install, and whether Slack says it is a
    Slack Connect channel (an event's `is_ext_shared_channel`); None for an event outside one
    (commands and buttons do not say)."""
    channel = string(context, "channel_id")
    if channel is None or not isinstance(body, dict):
        return None
    if body.get("type") == "event_callback":
        return (channel, True) if body.get("is_ext_shared_channel") is True else None
    return channel, False


def is_optional_string(data: dict[str, Any], key: str) -> bool:
    """Whether `data[key]` is absent, null or a string (anything else is malformed)."""
    return isinstance(data.get(key), (str, type(None)))


def is_well_formed_message(event: object) -> bool:
    """A message event with the types every message listener relies on."""
    if not isinstance(event, dict) or not string(event, "channel") or not string(event, "ts"):
        return False
    if not all(is_optional_string(event, key) for key in ("user", "text", "thread_ts", "subtype", "channel_type")):
        return False
    return isinstance(event.get("files"), (list, type(None)))


def shared_files(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's files that are objects (Slack's shape); anything else is dropped."""
    files = event.get("files")
    return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []


@dataclass(frozen=True)
class CommandFields:
    channel_id: str
    user_id: str
    text: str


def command_fields(command: dict[str, Any]) -> CommandFields | None:
    channel_id, user_id = string(command, "channel_id"), string(command, "user_id")
    if channel_id is None or user_id is None or not is_optional_string(command, "text"):
        return None
    return CommandFields(channel_id, user_id, (command.get("text") or "").strip())


@dataclass(frozen=True)
class ShortcutFields:
    channel_id: str
    user_id: str
    message: dict[str, Any]


def shortcut_fields(shortcut: dict[str, Any]) -> ShortcutFields | None:
    """The channel, the person and the message a message shortcut was used on."""
    channel_id, user_id = string(shortcut.get("channel"), "id"), string(shortcut.get("user"), "id")
    message = shortcut.get("message")
    if channel_id is None or user_id is None or not isinstance(message, dict):
        return None
    if not string(message, "ts") or not is_optional_string(message, "thread_ts"):
        return None
    return ShortcutFields(channel_id, user_id, {**message, "channel": channel_id})


@dataclass(frozen=True)
class ButtonFields:
    channel_id: str
    thread_ts: str
    user_id: str
    item_id: int | None = None
    """A Stop button's turn."""
    message_ts: str | None = None
    """The message the button is on."""


def reset_button_fields(action: dict[str, Any], body: dict[str, Any]) -> ButtonFields | None:
    """The thread a *Reset* or *Stop* button names in its value (`thread_ts` "" for the top
    level of a DM), and who pressed it."""
    user_id = button_user(body)
    raw = action.get("value") if isinstance(action, dict) else None
    try:
        target = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        target = None
    channel_id, thread_ts = string(target, "channel"), string(target, "thread_ts")
    names_top_level = isinstance(target, dict) and target.get("thread_ts") == ""
    if names_top_level and is_dm(channel_id or ""):
        thread_ts = ""
    if user_id is None or channel_id is None or thread_ts is None:
        return None
    item_id = target.get("item") if isinstance(target, dict) else None
    return ButtonFields(
        channel_id,
        thread_ts,
        user_id,
        item_id=item_id if isinstance(item_id, int) and not isinstance(item_id, bool) else None,
        message_ts=string(body.get("container"), "message_ts"),
    )


def button_user(body: dict[str, Any]) -> str | None:
    """Who pressed a button."""
    return string(body.get("user"), "id") if isinstance(body, dict) else None


@dataclass(frozen=True)
class HomeOpened:
    user_id: str
    tab: str  # "home" or "messages"
    channel_id: str | None = None
    """The app's DM with the person (the Messages tab)."""


def home_opened(event: object) -> HomeOpened | None:
    """Who opened which tab of the app's Home; None when the event does not say."""
    user_id, tab = string(event, "user"), string(event, "tab")
    if user_id is None or tab is None:
        return None
    return HomeOpened(user_id, tab, string(event, "channel"))


def viewer(body: dict[str, Any], event: dict[str, Any]) -> str | None:
    """The person an agent event is about: the event names them, or its one human authorization."""
    named = string(event, "user") or string(event, "user_id")
    if named:
        return named
    people = [a for a in body.get("authorizations") or [] if isinstance(a, dict) and a.get("is_bot") is False]
    return string(people[0], "user_id") if len(people) == 1 else None


def viewed(event: dict[str, Any], team_id: str) -> ThreadKey | None:
    """The most relevant channel or thread in an `app_context_changed` event's entities
    (`thread_ts` "" for a channel); None when it names neither. Entities come as
    `{"type": "slack#/types/channel_id", "value": "C…"}`; a thread may come as a
    `…/message`-like entity with `channel_id` and `thread_ts` (or `ts`), or as a
    `value` object with those keys."""
    entities = (event.get("context") or {}).get("entities") if isinstance(event.get("context"), dict) else None
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict):
            continue
        value = entity.get("value")
        fields = value if isinstance(value, dict) else entity
        channel = string(fields, "channel_id") or string(fields, "channel")
        thread_ts = string(fields, "thread_ts") or string(fields, "ts") or string(fields, "message_ts")
        if channel and thread_ts:
            return ThreadKey(team_id, channel, thread_ts)
        if str(entity.get("type", "")).endswith("channel_id") and isinstance(value, str) and value:
            return ThreadKey(team_id, value, "")
    return None


@dataclass(frozen=True)
class StreamStopped:
    """Slack's own stop control was pressed: on a message being streamed, or on an agent session."""

    channel_id: str
    thread_ts: str | None
    message_ts: str | None
    user_id: str | None


def stream_stopped(event: dict[str, Any]) -> StreamStopped | None:
    """The stop of a `message_stream_stopped` or `agent_session_stopped` event; None when it
    names no conversation. (Their exact fields are not documented: both spellings are read.)"""
    channel = string(event, "channel") or string(event, "channel_id")
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    message_ts = string(event, "message_ts") or string(event, "ts") or string(message, "ts")
    thread_ts = string(event, "thread_ts") or string(message, "thread_ts")
    if not channel or not (thread_ts or message_ts):
        return None
    return StreamStopped(channel, thread_ts, message_ts, string(event, "user") or string(event, "user_id"))


def assistant_thread(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The `assistant_thread` of an assistant event, when it names a channel and a thread."""
    thread = payload.get("assistant_thread")
    if isinstance(thread, dict) and string(thread, "channel_id") and string(thread, "thread_ts"):
        return thread
    return None


def response_url(body: dict[str, Any]) -> str | None:
    """The payload's `response_url`, when it is an http(s) URL `respond` can post to."""
    url = body.get("response_url")
    if not isinstance(url, str):
        return None
    try:
        parsed = urlparse(url)
        usable = parsed.scheme in ("http", "https") and bool(parsed.hostname)
    except ValueError:
        return None
    return url if usable else None


async def respond_safely(respond: AsyncRespond, body: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    """`respond(...)` when the payload allows it; a failed delivery is one log line."""
    if response_url(body) is None:
        logger.warning("cannot answer a %s payload: it has no usable response_url", payload_kind(body))
        return
    try:
        await respond(*args, **kwargs)
    except (aiohttp.ClientError, ValueError, *SLACK_ERRORS) as error:
        logger.warning("could not answer through response_url: %s", error)


def ignore_malformed(kind: str) -> None:
    """One log line for a payload a listener cannot use."""
    logger.warning("ignoring a malformed %s payload", kind)


def payload_kind(body: object) -> str:
    """A short name for a request body, for log lines: `event_callback/app_mention`, `/reset`…"""
    if not isinstance(body, dict):
        return "non-object"
    command = body.get("command")
    if isinstance(command, str):
        return command[:40]
    kind = str(body.get("type"))[:40]
    event = body.get("event")
    if isinstance(event, dict):
        kind += f"/{str(event.get('type'))[:40]}"
    return kind


Tell = Callable[..., Awaitable[None]]
"""`respond`, made safe: it never raises."""


def safe(respond: AsyncRespond, body: dict[str, Any]) -> Tell:
    """`respond` that never raises: a payload without a usable response_url is logged instead."""

    async def safe_respond(*args: Any, **kwargs: Any) -> None:
        await respond_safely(respond, body, *args, **kwargs)

    return safe_respond
