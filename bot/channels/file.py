"""The settings file (`SETTINGS_FILE`): TOML with `[defaults]`, `[workspaces.<team id>]`,
`[channels.<channel id>]` and `[dms]` tables of channel keys, for admins who keep their
configuration in git.

Read at start-up (problems stop it), on `SIGHUP`, and whenever the file changes (problems
then keep the settings read before, each logged). Every problem is one line naming the file,
the table and the key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tomllib
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from .. import config_values as values
from ..errors import StartupError
from ..policy.rules import POLICY_KEYS, Rules, read_rules
from .keys import DM_ENTRY, Keys, read_keys

logger = logging.getLogger(__name__)

TABLES = ("defaults", "workspaces", "channels", "dms")
CHANGE_POLL_SECONDS = 2.0
"""How often the file's modification time is looked at."""

ModelCheck = Callable[[str], Awaitable[str | None]]
"""Why a model cannot run turns (None when it can): `ModelCatalog.problem`."""


@dataclass(frozen=True)
class FileSettings:
    """What the file sets, layer by layer (the DMs' entry is the channel `dm`)."""

    defaults: Keys = Keys()
    workspaces: Mapping[str, Keys] = field(default_factory=dict)
    channels: Mapping[str, Keys] = field(default_factory=dict)
    rules: Mapping[str, Rules] = field(default_factory=dict)
    """The policy keys (`bot.policy.rules`) of `[defaults]` (entry "") and of each workspace."""

    def rules_for(self, team_id: str) -> list[Rules]:
        """A workspace's policy tables, lowest first."""
        return [rules for entry in ("", team_id) if (rules := self.rules.get(entry))]


async def read_settings_file(
    path: str, *, skills: Collection[str], check_model: ModelCheck
) -> tuple[FileSettings, list[str]]:
    """The file's settings and its problems, one line each; any problem leaves the settings empty."""
    try:
        document = await asyncio.to_thread(_load, path)
    except OSError as error:
        return FileSettings(), [f"{path}: cannot be read ({error.strerror or error})"]
    except tomllib.TOMLDecodeError as error:
        return FileSettings(), [f"{path}: not valid TOML ({error})"]
    problems: list[str] = []
    tables: list[tuple[str, str, Mapping[str, Any]]] = []  # (layer, id, keys)
    for name, value in document.items():
        if name not in TABLES:
            problems.append(f"{path}: [{name}] unknown table (known: {', '.join(TABLES)})")
        elif name in ("defaults", "dms"):
            if _is_table(value, path, name, problems):
                tables.append((name, DM_ENTRY if name == "dms" else "", value))
        elif _is_table(value, path, name, problems):
            for entry_id, keys in value.items():
                if _good_id(name, entry_id, path, problems) and _is_table(keys, path, f"{name}.{entry_id}", problems):
                    tables.append((name, entry_id, keys))
    models = {str(keys["model"]) for _, _, keys in tables if isinstance(keys.get("model"), str)}
    refused = {model: problem for model in sorted(models) if (problem := await check_model(model))}
    read: dict[tuple[str, str], Keys] = {}
    rules: dict[str, Rules] = {}
    for layer, entry_id, table in tables:
        where = _table_name(layer, entry_id)
        if layer in ("defaults", "workspaces"):
            rules[entry_id], found = read_rules(table)
            problems += [f"{path}: [{where}] {key}: {problem}" for key, problem in found]
            table = {key: value for key, value in table.items() if key not in POLICY_KEYS}
        keys, found = read_keys(table, skills=skills, models=models - refused.keys())
        for key, problem in found:
            if key == "model" and table.get("model") in refused:
                problem = refused[str(table["model"])]
            problems.append(f"{path}: [{where}] {key}: {problem}")
        read[(layer, entry_id)] = keys
    if problems:
        return FileSettings(), problems
    channels = {entry: keys for (layer, entry), keys in read.items() if layer in ("channels", "dms")}
    return FileSettings(
        defaults=read.get(("defaults", ""), Keys()),
        workspaces={entry: keys for (layer, entry), keys in read.items() if layer == "workspaces"},
        channels=channels,
        rules={entry: found for entry, found in rules.items() if found},
    ), []


def _load(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def _table_name(layer: str, entry_id: str) -> str:
    return layer if layer in ("defaults", "dms") else f"{layer}.{entry_id}"


def _is_table(value: Any, path: str, where: str, problems: list[str]) -> bool:
    if isinstance(value, dict):
        return True
    problems.append(f"{path}: [{where}] must be a table of keys, got {value!r}")
    return False


def _good_id(layer: str, entry_id: str, path: str, problems: list[str]) -> bool:
    prefixes = "TE" if layer == "workspaces" else "CG"
    if values.is_slack_id(entry_id, prefixes):
        return True
    what = "a team id (T…) or an organisation id (E…)" if layer == "workspaces" else "a channel id (C… or G…)"
    problems.append(f"{path}: [{layer}.{entry_id}] is not {what}")
    return False


class SettingsFile:
    """The file's settings as last read well, read again on `SIGHUP` and when it changes."""

    def __init__(self, path: str, *, skills: Collection[str], check_model: ModelCheck) -> None:
        self.path = path
        self._skills = skills
        self._check_model = check_model
        self.current = FileSettings()
        self._stamp: tuple[float, int] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._pending: asyncio.Task[list[str]] | None = None
        self._reading = asyncio.Lock()

    async def load(self) -> None:
        """At start-up: any problem stops it, every problem on its own line."""
        problems = await self.reload()
        if problems:
            raise StartupError("the settings file has problems:\n" + "\n".join(problems))

    async def reload(self) -> list[str]:
        """Read the file again; with problems, the settings read before stay (each is logged)."""
        async with self._reading:
            self._stamp = await self._modified()
            settings, problems = await read_settings_file(self.path, skills=self._skills, check_model=self._check_model)
            if problems:
                for problem in problems:
                    logger.error("%s (the settings read before stay)", problem)
                return problems
            if settings != self.current:
                logger.info("settings file %s read: %d channel(s), %d workspace(s)",
                            self.path, len(settings.channels), len(settings.workspaces))
            self.current = settings
            return []

    def reload_soon(self) -> None:
        """Read the file again as soon as the loop is free (`SIGHUP`)."""
        self._pending = asyncio.create_task(self.reload(), name="settings-file-reload")

    def watch(self) -> None:
        """Read the file again whenever its modification time or size changes."""
        self._watch = asyncio.create_task(self._watch_changes(), name="settings-file")

    async def close(self) -> None:
        for task in (self._watch, self._pending):
            if task is not None and not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._watch = self._pending = None

    async def _watch_changes(self) -> None:
        while True:
            await asyncio.sleep(CHANGE_POLL_SECONDS)
            try:
                if await self._modified() != self._stamp:
                    await self.reload()
            except Exception:  # noqa: BLE001 - a watcher must outlive one bad reading
                logger.exception("could not read the settings file %s again", self.path)

    async def _modified(self) -> tuple[float, int] | None:
        try:
            stat = await asyncio.to_thread(os.stat, self.path)
        except OSError:
            return None
        return stat.st_mtime, stat.st_size
