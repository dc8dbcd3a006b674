"""slack_sdk's installation and OAuth state stores over threadbox's own database.

Bolt's install flow saves what `oauth.v2.access` granted through `AsyncInstallationStore`, and
its authorize finds each request's bot there; both land in the same database as everything
else (SQLite or PostgreSQL, the same migrations and backups), and nothing blocks the event loop.
Tokens are kept there and nowhere else: they are never logged.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from storage import InstallKey, Store

logger = logging.getLogger(__name__)


def install_key(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> InstallKey:
    """An org-wide install is its organisation's, whatever workspace a request came from."""
    if is_enterprise_install:
        return InstallKey(enterprise_id or "", "")
    return InstallKey(enterprise_id or "", team_id or "")


def record_of(model: Bot | Installation) -> dict[str, Any]:
    """A slack_sdk record as JSON: its datetimes as ISO text, which Bot(...) and Installation(...) take back."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in model.to_dict_for_copying().items()}


def bot_of(record: dict[str, Any]) -> Bot:
    return Bot(**record)


class SlackInstallations(AsyncInstallationStore):
    """Bot-only installs: one per workspace, or one per organisation for an org-wide install."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def logger(self) -> logging.Logger:
        return logger

    async def async_save(self, installation: Installation) -> None:
        key = install_key(installation.enterprise_id, installation.team_id, installation.is_enterprise_install)
        await self.store.save_installation(
            key, org=installation.is_enterprise_install, bot=record_of(installation.to_bot()),
            installation=record_of(installation),
        )

    async def async_save_bot(self, bot: Bot) -> None:
        key = install_key(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        await self.store.save_installation(key, org=bot.is_enterprise_install, bot=record_of(bot))

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        key = install_key(enterprise_id, team_id, is_enterprise_install)
        found = await self.store.find_installation(key.team_id, key.enterprise_id)
        return bot_of(found.bot) if found is not None else None

    async def async_find_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        if user_id is not None:  # bot-only: no person's own install is ever kept
            return None
        key = install_key(enterprise_id, team_id, is_enterprise_install)
        found = await self.store.find_installation(key.team_id, key.enterprise_id)
        if found is None or found.installation is None:
            return None
        return Installation(**{**found.installation, **_bot_fields(found.bot)})

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete(enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:
            await self._delete(enterprise_id, team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete(enterprise_id, team_id)

    async def _delete(self, enterprise_id: str | None, team_id: str | None) -> None:
        """The install serving that workspace: its own, else its organisation's."""
        found = await self.store.find_installation(team_id or "", enterprise_id or "")
        if found is not None:
            await self.store.delete_installation(found.key)


def _bot_fields(bot: dict[str, Any]) -> dict[str, Any]:
    """A rotated bot token is saved on the bot record alone: the installation takes it from there."""
    names = ("bot_token", "bot_refresh_token", "bot_token_expires_at", "bot_scopes", "bot_id", "bot_user_id")
    return {name: bot[name] for name in names if name in bot}


class SlackOAuthStates(AsyncOAuthStateStore):
    """The install flow's states: issued once, good once, for `expiration_seconds`."""

    def __init__(self, store: Store, expiration_seconds: int) -> None:
        self.store = store
        self.expiration_seconds = expiration_seconds

    @property
    def logger(self) -> logging.Logger:
        return logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        await self.store.issue_oauth_state(state, self.expiration_seconds)
        return state

    async def async_consume(self, state: str) -> bool:
        return await self.store.consume_oauth_state(state)
