"""The `/threadbox settings` modal: a channel's settings, where each value comes from, and (for
those who may change them) an input per key the settings file leaves open.

Built from a `ChannelLayers`; `submitted_keys` reads a submitted modal back into the raw values
`read_keys` takes, so the modal and the settings file are held to the same rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from storage import StoredSettings

from ..channels.book import ChannelLayers, ChannelSettingsBook
from ..channels.keys import (
    DM_ENTRY,
    EFFORTS,
    FOLLOW_UP_CHOICES,
    KEY_NAMES,
    MAX_INSTRUCTIONS_CHARS,
    Keys,
    budget_text,
    read_keys,
)
from ..policy.budgets import Budget
from .blocks import EDIT_SETTINGS_ACTION_ID, Block, context, header, section
from .text import escape_mrkdwn, slack_date

SETTINGS_VIEW_ID = "channel_settings"
FALL_BACK = "__fall_back__"
NO_SKILLS = "__none__"
CACHE_NOTE = (
    "Changing the model or the instructions starts a new prompt cache: the next turn of each thread"
    " here reads its history back at the cache-write price (1.25× input) once, and the thread is"
    " told of the change. Containers and files stay."
)
LABELS = {
    "instructions": "Instructions",
    "model": "Model",
    "effort": "Effort",
    "skills": "Skills",
    "web_fetch": "Web fetch",
    "web_search": "Web search",
    "follow_ups": "Follow-ups",
    "daily_budget": "Daily budget per person",
}
HINTS = {
    "instructions": "Added to threadbox's own rules for every answer here (never replacing them).",
    "follow_ups": "all: every reply in the bot's threads; mention: only replies that mention it.",
    "daily_budget": "Tokens (500000) or estimated dollars ($5), per person and UTC day, in this channel.",
}


def shown(key: str, value: Any) -> str:
    """A value as the modal and the Home tab show it."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Budget):
        return budget_text(value)
    if isinstance(value, tuple):
        return ", ".join(value) or "none"
    if key == "instructions":
        text = str(value)
        return f"“{text[:200]}…”" if len(text) > 200 else f"“{text}”"
    return str(value)


def described(keys: dict[str, Any]) -> str:
    """What a layer sets, in one line."""
    return "; ".join(f"{key} {escape_mrkdwn(shown(key, value))}" for key, value in keys.items()) or "nothing"


def where(channel_id: str) -> str:
    return "every direct message with threadbox" if channel_id == DM_ENTRY else f"<#{channel_id}>"


def settings_modal(
    layers: ChannelLayers, *, channel_id: str, team_id: str, editable: bool, models: list[str], skills: list[str]
) -> dict[str, Any]:
    """The modal for one channel's settings; read-only unless `editable`."""
    blocks: list[Block] = [section(f"Settings for {where(layers.entry)}.")]
    if layers.stored is not None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(layers.stored.changed_at))
        blocks.append(context(f"Last changed in Slack by <@{layers.stored.changed_by}> on {when}."))
    if editable:
        blocks.append(context(CACHE_NOTE))
    for key in KEY_NAMES:
        value, source = layers.value(key)
        fallback, fallback_source = layers.value(key, below_slack=True)
        locked = getattr(layers.file, key) is not None
        label = LABELS[key]
        if not editable or locked:
            why = "locked: set in the settings file" if locked else f"from {source}"
            blocks.append(section(f"*{label}*: {escape_mrkdwn(shown(key, value))}  _({why})_"))
            continue
        blocks.append(_input(key, getattr(layers.slack, key), fallback, fallback_source, models=models, skills=skills))
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": SETTINGS_VIEW_ID,
        "title": {"type": "plain_text", "text": "DM settings" if layers.entry == DM_ENTRY else "Channel settings"},
        "close": {"type": "plain_text", "text": "Cancel" if editable else "Close"},
        "private_metadata": json.dumps({"team": team_id, "channel": channel_id}),
        "blocks": blocks,
    }
    if editable:
        view["submit"] = {"type": "plain_text", "text": "Save"}
    return view


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text[:75]}, "value": value}


def _input(
    key: str, value: Any, fallback: Any, fallback_source: str, *, models: list[str], skills: list[str]
) -> Block:
    hint = f"Not set here: {shown(key, fallback)} (from {fallback_source})."
    if key in HINTS:
        hint = f"{HINTS[key]} {hint}"
    element: dict[str, Any]
    if key in ("instructions", "daily_budget"):
        element = {"type": "plain_text_input", "multiline": key == "instructions",
                   "max_length": MAX_INSTRUCTIONS_CHARS if key == "instructions" else 40}
        if value is not None:
            element["initial_value"] = value if key == "instructions" else budget_text(value)
    elif key == "skills":
        options = [_option("No skills", NO_SKILLS), *(_option(name, name) for name in skills)]
        element = {"type": "multi_static_select", "options": options,
                   "placeholder": {"type": "plain_text", "text": "Not set here"}}
        if value is not None:
            chosen = [o for o in options if o["value"] in value] or [options[0]]
            element["initial_options"] = chosen
    else:
        choices = {
            "model": models if value is None or value in models else [*models, str(value)],
            "effort": list(EFFORTS),
            "follow_ups": list(FOLLOW_UP_CHOICES),
            "web_fetch": ["on", "off"],
            "web_search": ["on", "off"],
        }[key]
        options = [_option(f"Not set here ({shown(key, fallback)})", FALL_BACK), *(_option(c, c) for c in choices)]
        element = {"type": "static_select", "options": options}
        current = shown(key, value) if isinstance(value, bool) else value
        element["initial_option"] = next((o for o in options if o["value"] == current), options[0])
    element["action_id"] = key
    return {
        "type": "input", "block_id": key, "optional": True,
        "label": {"type": "plain_text", "text": LABELS[key]},
        "hint": {"type": "plain_text", "text": hint[:2000]},
        "element": element,
    }


def submitted_keys(view: dict[str, Any]) -> dict[str, Any]:
    """The values a submitted modal sets, as `read_keys` reads them (what is left at "not
    set here" is absent)."""
    values: dict[str, Any] = {}
    state = ((view.get("state") or {}).get("values")) or {}
    for key in KEY_NAMES:
        answer = (state.get(key) or {}).get(key)
        if not isinstance(answer, dict):
            continue
        kind = answer.get("type")
        if kind == "plain_text_input":
            text = str(answer.get("value") or "").strip()
            if text:
                values[key] = text
        elif kind == "static_select":
            chosen = (answer.get("selected_option") or {}).get("value")
            if chosen and chosen != FALL_BACK:
                values[key] = {"on": True, "off": False}.get(chosen, chosen) if key.startswith("web_") else chosen
        elif kind == "multi_static_select":
            chosen = [o.get("value") for o in answer.get("selected_options") or [] if isinstance(o, dict)]
            if chosen:
                values[key] = [] if chosen == [NO_SKILLS] else chosen
    return values


def metadata(view: dict[str, Any]) -> tuple[str, str] | None:
    """The (team, channel) a submitted modal is about, or None when it was tampered with."""
    try:
        data = json.loads(str(view.get("private_metadata") or ""))
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("team"), str) or not isinstance(data.get("channel"), str):
        return None
    return data["team"], data["channel"]


def channel_settings_blocks(
    book: ChannelSettingsBook, stored: Mapping[str, StoredSettings], *, limit: int
) -> list[Block]:
    """For admins' Home tab: each channel with settings of its own (in the settings file or
    set in Slack), what is set, by whom, and an *Edit* button that opens its settings."""
    in_file = book.file.current.channels if book.file is not None else {}
    entries = sorted(set(stored) | set(in_file), key=lambda entry: (entry != DM_ENTRY, entry))
    if not entries:
        return []
    blocks: list[Block] = [{"type": "divider"}, header("Channel settings")]
    for entry in entries[:limit]:
        lines = []
        file_keys = in_file.get(entry, Keys()).set_here()
        if file_keys:
            lines.append(f"settings file: {described(file_keys)}")
        if entry in stored:
            slack_keys, _ = read_keys(stored[entry].values, skills=book.skill_names)
            by = stored[entry]
            when = slack_date(by.changed_at, "{date_short_pretty}")
            lines.append(f"set in Slack by <@{by.changed_by}> ({when}): {described(slack_keys.set_here())}")
        button = {"type": "button", "action_id": EDIT_SETTINGS_ACTION_ID, "value": entry,
                  "text": {"type": "plain_text", "text": "Edit"}}
        blocks.append(section(f"*{where(entry)}*\n" + "\n".join(lines), accessory=button))
    if len(entries) > limit:
        blocks.append(context(f"…and {len(entries) - limit} more channels with settings of their own."))
    return blocks
