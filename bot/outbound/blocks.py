"""Every Block Kit piece threadbox shows, and every action id its buttons carry.

The listeners match on these ids, so a button and the listener that answers it name the same
constant.
"""

from __future__ import annotations

import json
from typing import Any

from storage import ThreadKey, ThreadSummary

from .text import quoted

Block = dict[str, Any]

STOP_ACTION_ID = "stop_turn"
RESET_ACTION_ID = "reset_thread"
HOME_RESET_ACTION_ID = "home_reset_thread"
# A context block's text is cut here (Slack refuses more than 3,000 characters).
CONTEXT_TEXT_LIMIT = 2900
PICKER_EXCERPT_CHARS = 140


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def section(text: str, accessory: Block | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if accessory is not None:
        block["accessory"] = accessory
    return block


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:CONTEXT_TEXT_LIMIT]} for text in texts]}


def markdown(text: str) -> Block:
    return {"type": "markdown", "text": text}


def thread_value(thread: ThreadKey, **more: Any) -> str:
    """What a button names its thread by (`thread_ts` "" for the top level of a DM)."""
    return json.dumps({**more, "channel": thread.channel_id, "thread_ts": thread.thread_ts})


def stop_button(value: str) -> Block:
    """The button that stops the running turn `value` names."""
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Stop"},
                "style": "danger",
                "action_id": STOP_ACTION_ID,
                "value": value,
            }
        ],
    }


def shows_stop_button(message: dict[str, object], value: str) -> bool:
    """Whether a message (as the Web API returns it) carries the Stop button with `value`."""
    blocks = message.get("blocks")
    return isinstance(blocks, list) and any(
        isinstance(block, dict) and block.get("type") == "actions" and any(
            isinstance(element, dict) and element.get("action_id") == STOP_ACTION_ID and element.get("value") == value
            for element in block.get("elements") or []
        )
        for block in blocks
    )


def is_stop_offer(message: object) -> bool:
    """Whether a message is a Stop button of its own (a streamed reply's), not a reply."""
    blocks = message.get("blocks") if isinstance(message, dict) else None
    return isinstance(blocks, list) and not any(isinstance(b, dict) and b.get("type") == "markdown" for b in blocks)


def reset_button(thread: ThreadKey) -> Block:
    """The Home tab's *Reset* button naming its thread, with a confirmation: a reset cannot be undone."""
    return {
        "type": "button",
        "action_id": HOME_RESET_ACTION_ID,
        "text": {"type": "plain_text", "text": "Reset"},
        "value": thread_value(thread),
        "confirm": {
            "title": {"type": "plain_text", "text": "Reset this thread?"},
            "text": {
                "type": "mrkdwn",
                "text": "Its container and history are dropped; the next message there starts afresh."
                " What was posted in Slack stays.",
            },
            "confirm": {"type": "plain_text", "text": "Reset"},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "danger",
        },
    }


def thread_picker(threads: list[ThreadSummary], bot_user_id: str) -> dict[str, Any]:
    """The ephemeral answer to a bare `/reset` in a channel: the user's threads, a button each."""
    if not threads:
        return {
            "text": (
                "You have no active threadbox threads in this channel. To reset a thread, type"
                " `!reset` in it, use the *Reset container* message shortcut, or run"
                " `/reset <link to the thread>`."
            )
        }
    blocks: list[Block] = [section("*Your threadbox threads here:*")]
    for summary in threads:
        excerpt = quoted(summary.last_text, bot_user_id, PICKER_EXCERPT_CHARS)
        button: Block = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Reset"},
            "style": "danger",
            "action_id": RESET_ACTION_ID,
            "value": thread_value(summary.thread),
        }
        blocks.append(section(excerpt, accessory=button))
    return {"text": "Your threadbox threads in this channel", "blocks": blocks}
