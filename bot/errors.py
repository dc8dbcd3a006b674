"""One error hierarchy for threadbox's own failures, and the Slack SDK's errors as one tuple.

Each threadbox error's message is meant for a person: the operator (`ConfigError`) or the
thread (`FileRelayError`, already escaped for mrkdwn).
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError, SlackRequestError

# What a Slack Web API call raises when Slack refuses it or cannot be reached.
SLACK_ERRORS = (SlackApiError, SlackRequestError)


class ThreadboxError(Exception):
    """A failure threadbox itself explains in words."""


class ConfigError(ThreadboxError):
    """A setting is missing or malformed; the message is one line meant for the operator."""


class StartupError(ThreadboxError):
    """The bot cannot start; the message is one line for the operator, saying what to do."""


class NotStored(ThreadboxError):
    """A finished turn's answer could not be stored, however often it was asked: its message
    stays open and runs again (its reply says the attempt was interrupted)."""


class FileRelayError(ThreadboxError):
    """A file could not be relayed; the message is meant for the thread (already escaped)."""


def slack_error(error: SlackApiError) -> str:
    """The `error` Slack answered (`ratelimited`, `stopped_by_user`…), or its HTTP status when
    the answer was no JSON object (its edge answers a 5xx with text)."""
    data = getattr(error.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    if isinstance(code, str):
        return code
    return f"HTTP {getattr(error.response, 'status_code', '?')}"
