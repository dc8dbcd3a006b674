"""Every Block Kit piece threadbox shows, and every action id its buttons carry.

The listeners match on these ids, so a button and the listener that answers it name the same
constant.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks.basic_components import FeedbackButtonObject
from slack_sdk.models.blocks.block_elements import FeedbackButtonsElement
from slack_sdk.models.blocks.blocks import ContextActionsBlock

from storage import ThreadKey, ThreadSummary

from .text import quoted

Block = dict[str, Any]

STOP_ACTION_ID = "stop_turn"
RESET_ACTION_ID = "reset_thread"
HOME_RESET_ACTION_ID = "home_reset_thread"
FEEDBACK_ACTION_ID = "answer_feedback"
EDIT_SETTINGS_ACTION_ID = "edit_channel_settings"
FORK_ACTION_ID = "fork_thread"
RATINGS = ("good", "bad")
# A section's or a context element's text is cut here (Slack refuses more than 3,000 characters;
# a message's `text` keeps the whole of it).
TEXT_LIMIT = 2900
PICKER_EXCERPT_CHARS = 140


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def section(text: str, accessory: Block | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": text[:TEXT_LIMIT]}}
    if accessory is not None:
        block["accessory"] = accessory
    return block


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:TEXT_LIMIT]} for text in texts]}


def markdown(text: str) -> Block:
    return {"type": "markdown", "text": text}


def thread_value(thread: ThreadKey, **more: Any) -> str:
    """What a button names its thread by (`thread_ts` "" for the top level of a DM)."""
    return json.dumps({**more, "channel": thread.channel_id, "thread_ts": thread.thread_ts})


def fork_button(thread: ThreadKey) -> Block:
    """Under `!files`: fork the thread (a new thread that goes on from here)."""
    return {
        "type": "actions",
        "elements": [{
            "type": "button", "action_id": FORK_ACTION_ID, "value": thread_value(thread),
            "text": {"type": "plain_text", "text": "Fork this thread"},
        }],
    }


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


def feedback_buttons(thread: ThreadKey, item_id: int, model: str) -> Block:
    """Slack's thumbs under a finished answer; each carries its rating, the turn, its thread and model."""
    def button(rating: str, text: str) -> FeedbackButtonObject:
        return FeedbackButtonObject(text=text, value=thread_value(thread, item=item_id, model=model, rating=rating))

    element = FeedbackButtonsElement(
        action_id=FEEDBACK_ACTION_ID, positive_button=button("good", "Good answer"),
        negative_button=button("bad", "Bad answer"),
    )
    return ContextActionsBlock(elements=[element]).to_dict()


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
