"""Fake Slack and Anthropic servers for tests, driven by the real SDK clients."""

from .anthropic_api import ErrorReply, FakeAnthropic, Reply, code_error, code_run, file_edit, text
from .slack_api import (
    FakeSlack,
    SlackCall,
    block_action_body,
    command_body,
    event_body,
    home_action_body,
    home_opened_event,
    mention_event,
    message_event,
    rendered_text,
    shortcut_body,
    sign,
)

__all__ = [
    "ErrorReply",
    "FakeAnthropic",
    "FakeSlack",
    "Reply",
    "SlackCall",
    "block_action_body",
    "code_error",
    "code_run",
    "command_body",
    "event_body",
    "file_edit",
    "home_action_body",
    "home_opened_event",
    "mention_event",
    "message_event",
    "rendered_text",
    "shortcut_body",
    "sign",
    "text",
]
