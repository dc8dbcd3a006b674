"""A channel's settings, resolved through its layers, top first: the settings file's table for
the channel (locked in Slack), what its admins set in Slack, the file's table for the
workspace, the file's defaults, and the process settings. The DMs share one entry (`dm`).

Read for every turn (the Slack layer from the database, so every process sees a change at
its next turn), and for the `/threadbox settings` modal, which shows where each value comes
from.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import anthropic
from anthropic.types import SkillParams

from storage import Store, StoredSettings

from ..model.catalog import ModelCatalog, ModelUnusable
from ..model.request import ModelSettings
from ..policy.budgets import Budget
from ..threads import is_dm
from .file import FileSettings, SettingsFile
from .keys import DM_ENTRY, Keys, read_keys

logger = logging.getLogger(__name__)

INSTRUCTIONS_HEADING = (
    "Instructions for this Slack channel from its admins (they add to everything above and never"
    " override it):"
)
FILE_CHANNEL, SLACK, FILE_WORKSPACE, FILE_DEFAULTS, PROCESS = (
    "the settings file (this channel)", "set in Slack", "the settings file (this workspace)",
    "the settings file (defaults)", "the process settings",
)


@dataclass(frozen=True)
class ChannelSettings:
    """How threadbox behaves in one channel: the model request, which follow-ups it answers,
    and a daily budget per person there."""

    model: ModelSettings
    follow_ups: str
    daily_budget: Budget | None = None
    instructions: str | None = None

    @property
    def seen(self) -> str:
        """What a thread is told about when it changes: the model and the instructions."""
        digest = hashlib.sha256(self.instructions.encode()).hexdigest()[:16] if self.instructions else None
        return json.dumps({"model": self.model.model, "instructions": digest})

    def changes_since(self, seen: str | None) -> str | None:
        """Words for a thread whose last turn ran with `seen`, or None when nothing it is told
        about changed (or the thread has not run yet)."""
        if seen is None or seen == self.seen:
            return None
        try:
            before = json.loads(seen)
        except ValueError:
            return None
        now = json.loads(self.seen)
        said = []
        if before.get("model") != now["model"]:
            said.append(f"model now {self.model.model}")
        if before.get("instructions") != now["instructions"]:
            said.append("new instructions" if self.instructions else "its instructions were removed")
        return f"_Settings for this channel changed: {', '.join(said)}._" if said else None


@dataclass(frozen=True)
class Layer:
    source: str
    keys: Keys


@dataclass(frozen=True)
class ChannelLayers:
    """A channel's layers, and its row of settings set in Slack (who, when)."""

    entry: str
    layers: tuple[Layer, ...]
    stored: StoredSettings | None

    def value(self, key: str, *, below_slack: bool = False) -> tuple[Any, str]:
        """The value `key` takes and the layer it comes from; `below_slack`: what it falls back
        to without the file's and Slack's values for this channel."""
        for layer in self.layers[2:] if below_slack else self.layers:
            value = getattr(layer.keys, key)
            if value is not None:
                return value, layer.source
        return None, PROCESS

    @property
    def keys(self) -> Keys:
        combined = Keys()
        for layer in reversed(self.layers):
            combined = layer.keys.over(combined)
        return combined

    @property
    def slack(self) -> Keys:
        return self.layers[1].keys

    @property
    def file(self) -> Keys:
        """What the settings file sets for this very channel: Slack shows it, locked."""
        return self.layers[0].keys


def entry_of(channel_id: str) -> str:
    """The entry a channel's settings are kept under: its id, or `dm` for every DM."""
    return DM_ENTRY if is_dm(channel_id) else channel_id


class ChannelSettingsBook:
    """Resolves channels' settings for one process (every workspace it serves)."""

    def __init__(
        self, *, process: Keys, base: ModelSettings, store: Store, catalog: ModelCatalog,
        shelf: Mapping[str, SkillParams], file: SettingsFile | None = None,
    ) -> None:
        self.process = process
        self.base = base
        self.store = store
        self.catalog = catalog
        self.shelf = shelf
        self.file = file

    @property
    def skill_names(self) -> tuple[str, ...]:
        return tuple(self.shelf)

    async def layers(self, team_id: str, channel_id: str) -> ChannelLayers:
        entry = entry_of(channel_id)
        file = self.file.current if self.file is not None else FileSettings()
        stored = await self.store.channel_settings(team_id, entry)
        slack = Keys()
        if stored is not None:
            slack, problems = read_keys(stored.values, skills=self.shelf)
            for key, problem in problems:  # e.g. a custom skill since removed from the folder
                logger.warning("channel %s: the %s set in Slack is left out: %s", entry, key, problem)
        return ChannelLayers(entry, (
            Layer(FILE_CHANNEL, file.channels.get(entry, Keys())),
            Layer(SLACK, slack),
            Layer(FILE_WORKSPACE, file.workspaces.get(team_id, Keys())),
            Layer(FILE_DEFAULTS, file.defaults),
            Layer(PROCESS, self.process),
        ), stored)

    async def settings_for(self, team_id: str, channel_id: str) -> ChannelSettings:
        return await self.build((await self.layers(team_id, channel_id)).keys)

    async def build(self, keys: Keys) -> ChannelSettings:
        """The settings a turn runs with, from the keys its layers give."""
        model = keys.model or self.base.model
        try:
            limits = await self.catalog.limits(model)
        except ModelUnusable as unusable:  # retired since it was set: the process's model answers
            logger.warning("%s; the channel falls back to %s", unusable.problem, self.base.model)
            limits, model = self.catalog.configured, self.base.model
        except anthropic.APIError as error:  # not asked yet, and the API away: asked again next turn
            logger.warning("could not ask the API about %s (%s); this turn uses %s", model, error, self.base.model)
            limits, model = self.catalog.configured, self.base.model
        system = self.base.system_prompt
        if keys.instructions:
            system = f"{system}\n\n{INSTRUCTIONS_HEADING}\n{keys.instructions}"
        web = replace(
            self.base.web,
            fetch=self.base.web.fetch if keys.web_fetch is None else keys.web_fetch,
            search=self.base.web.search if keys.web_search is None else keys.web_search,
        )
        skills = self.base.skills
        if keys.skills is not None:
            skills = tuple(self.shelf[name] for name in keys.skills if name in self.shelf)
        request = replace(
            self.base, model=model, max_tokens=limits.max_tokens, context_window=limits.context_window,
            system_prompt=system, web=web, skills=skills, effort=keys.effort,
        )
        return ChannelSettings(request, keys.follow_ups or "all", keys.daily_budget, keys.instructions)
