"""What Slack refuses, as `FakeSlack` applies it: manifests for new apps, message and stream
sizes, and the per-method, per-workspace rate tiers (see `shared` API facts: Slack)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

# Calls a minute per method, per workspace, per app (docs.slack.dev rate limits: Tier 2 about
# 20, Tier 3 about 50, Tier 4 about 100). `chat.postMessage` is about one a second per channel.
TIER_2, TIER_3, TIER_4 = 20, 50, 100
RATE_TIERS = {
    "chat.startStream": TIER_2,
    "chat.stopStream": TIER_2,
    "chat.appendStream": TIER_4,
    "chat.update": TIER_3,
    "chat.delete": TIER_3,
    "chat.postEphemeral": TIER_4,
    "reactions.add": TIER_3,
    "reactions.remove": TIER_3,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "files.info": TIER_4,
    "conversations.replies": TIER_3,
    "conversations.history": TIER_3,
    "conversations.info": TIER_3,
    "conversations.members": TIER_4,
    "users.info": TIER_4,
    "users.list": TIER_2,
    "views.publish": TIER_4,
    "views.open": TIER_4,
    "assistant.threads.setStatus": TIER_3,
    "assistant.threads.setTitle": TIER_3,
    "assistant.threads.setSuggestedPrompts": TIER_3,
    "agents.sessions.setStatus": TIER_3,
}
POST_MESSAGE_PER_CHANNEL = 60
"""`chat.postMessage`: about one a second in each channel, with short bursts allowed."""

# Message limits (chat.postMessage / chat.update / streams).
TEXT_LIMIT = 40_000
MARKDOWN_TEXT_LIMIT = 12_000
BLOCKS_LIMIT = 50
SUGGESTED_PROMPTS_LIMIT = 4


class RateTiers:
    """A sliding minute per (workspace, method) — per channel for `chat.postMessage`. `window`
    shortens the minute for a test that wants to see the limit without waiting for it."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.enabled = True
        self._calls: dict[tuple[str, str, str], deque[float]] = {}

    def retry_after(self, team_id: str, method: str, args: dict[str, Any]) -> int | None:
        """None when the call may go now; otherwise the whole seconds Slack says to wait."""
        if not self.enabled:
            return None
        if method == "chat.postMessage":
            key, limit = (team_id, method, str(args.get("channel", ""))), POST_MESSAGE_PER_CHANNEL
        elif method in RATE_TIERS:
            key, limit = (team_id, method, ""), RATE_TIERS[method]
        else:
            return None
        now = time.monotonic()
        calls = self._calls.setdefault(key, deque())
        while calls and now - calls[0] >= self.window:
            calls.popleft()
        if len(calls) >= limit:
            return max(1, int(self.window - (now - calls[0]) + 0.999))
        calls.append(now)
        return None


def message_size_error(method: str, args: dict[str, Any]) -> str | None:
    """The error Slack answers for a message over its limits, or None."""
    blocks = args.get("blocks")
    if isinstance(blocks, list) and len(blocks) > BLOCKS_LIMIT:
        return "msg_blocks_too_many"
    if len(str(args.get("text") or "")) > TEXT_LIMIT:
        return "msg_too_long"
    if method.startswith("chat.") and method.endswith("Stream"):
        if len(str(args.get("markdown_text") or "")) > MARKDOWN_TEXT_LIMIT:
            return "msg_too_long"
        for chunk in args.get("chunks") or []:
            if isinstance(chunk, dict) and len(str(chunk.get("text") or "")) > MARKDOWN_TEXT_LIMIT:
                return "invalid_chunks"
            if isinstance(chunk, dict) and len(chunk.get("blocks") or []) > BLOCKS_LIMIT:
                return "msg_blocks_too_many"
    return None


# Modals (views.open): a trigger is good once, for 3 seconds; the view's own limits.
TRIGGER_SECONDS = 3
MODAL_TEXT_LIMIT = 24
MODAL_BLOCKS_LIMIT = 100
PRIVATE_METADATA_LIMIT = 3000
INPUT_MAX_LENGTH = 3000
OPTIONS_LIMIT = 100


def modal_problem(view: dict[str, Any]) -> str | None:
    """What `views.open` refuses in a modal view (its `response_metadata` message), or None."""
    if view.get("type") != "modal":
        return "[ERROR] must be a modal [json-pointer:/view/type]"
    for key in ("title", "submit", "close"):
        text = (view.get(key) or {}).get("text") if isinstance(view.get(key), dict) else None
        if key == "title" and not text:
            return "[ERROR] missing required field: title [json-pointer:/view/title]"
        if text is not None and len(text) > MODAL_TEXT_LIMIT:
            return f"[ERROR] must be less than {MODAL_TEXT_LIMIT + 1} characters [json-pointer:/view/{key}/text]"
    blocks = view.get("blocks") or []
    if len(blocks) > MODAL_BLOCKS_LIMIT:
        return "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"
    if len(str(view.get("private_metadata") or "")) > PRIVATE_METADATA_LIMIT:
        return "[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]"
    inputs = [block for block in blocks if isinstance(block, dict) and block.get("type") == "input"]
    if inputs and not view.get("submit"):
        return "[ERROR] submit is required when an input block is present [json-pointer:/view/submit]"
    block_ids = [block.get("block_id") for block in blocks if isinstance(block, dict) and block.get("block_id")]
    if len(block_ids) != len(set(block_ids)):
        return "[ERROR] block_id must be unique [json-pointer:/view/blocks]"
    for n, block in enumerate(inputs):
        element = block.get("element") or {}
        if not element.get("action_id") or not block.get("label"):
            return f"[ERROR] input needs a label and an element with an action_id [json-pointer:/view/blocks/{n}]"
        if int(element.get("max_length") or 0) > INPUT_MAX_LENGTH:
            return f"[ERROR] max_length must be at most {INPUT_MAX_LENGTH} [json-pointer:/view/blocks/{n}/element]"
        if len(str(element.get("initial_value") or "")) > int(element.get("max_length") or INPUT_MAX_LENGTH):
            return f"[ERROR] initial_value is longer than max_length [json-pointer:/view/blocks/{n}/element]"
        if len(element.get("options") or []) > OPTIONS_LIMIT:
            return f"[ERROR] no more than {OPTIONS_LIMIT} options allowed [json-pointer:/view/blocks/{n}/element]"
    return None


# The scope each bot event needs (Slack refuses a manifest that subscribes without it).
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
}
# Events that exist only with a surface of the app.
ASSISTANT_VIEW_EVENTS = {"assistant_thread_started", "assistant_thread_context_changed"}
AGENT_VIEW_EVENTS = {"app_context_changed", "agent_session_stopped", "agent_session_title_changed"}


def manifest_problems(manifest: dict[str, Any]) -> list[dict[str, str]]:
    """What `apps.manifest.create` refuses in a manifest for a new app, as Slack's `errors`
    (`message`, `pointer`); empty when it would create the app."""
    problems: list[dict[str, str]] = []

    def refuse(pointer: str, message: str) -> None:
        problems.append({"pointer": pointer, "message": message})

    features = manifest.get("features") or {}
    settings = manifest.get("settings") or {}
    events = set(((settings.get("event_subscriptions") or {}).get("bot_events")) or [])
    scopes = set((((manifest.get("oauth_config") or {}).get("scopes") or {}).get("bot")) or [])
    if "assistant_view" in features:
        refuse("/features/assistant_view", "assistant_view is not available to new apps: use agent_view")
    agent_view = features.get("agent_view")
    if agent_view is not None and not (isinstance(agent_view, dict) and agent_view.get("agent_description")):
        refuse("/features/agent_view/agent_description", "agent_view needs an agent_description")
    for event in sorted(events & ASSISTANT_VIEW_EVENTS):
        refuse("/settings/event_subscriptions/bot_events", f"{event} needs assistant_view")
    if agent_view is None:
        for event in sorted(events & AGENT_VIEW_EVENTS):
            refuse("/settings/event_subscriptions/bot_events", f"{event} needs agent_view")
    for event, scope in EVENT_SCOPES.items():
        if event in events and scope not in scopes:
            refuse("/settings/event_subscriptions/bot_events", f"{event} needs the {scope} scope")
    if agent_view is not None and "assistant:write" not in scopes:
        refuse("/oauth_config/scopes/bot", "agent_view needs the assistant:write scope")
    return problems
