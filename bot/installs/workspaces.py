"""The workspace seam for many installations: each request, turn and schedule finds its
install in the database, with a client holding that install's token.

Requests come with Bolt's authorize already done (the token found, rotated when it was
expiring); background work (queued turns, waiting signs, schedules) finds its token here, and
rotates it the same way, one refresh at a time. Each install's `Workspace` is built once and
kept, so its caches of people and channels and its rate budget last; its token is read again
from the database every `REREAD_SECONDS`, and at once when it is about to expire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.oauth.installation_store import Bot
from slack_sdk.web.async_client import AsyncWebClient

from storage import InstallKey, Store

from ..channels.book import ChannelSettingsBook
from ..errors import SLACK_ERRORS
from ..policy.access import AccessControl, AccessPolicy
from ..workspaces import Workspace
from .rotation import DEFAULT_MINUTES_BEFORE_EXPIRATION, OneRefreshAtATime, expiring
from .store import bot_of

logger = logging.getLogger(__name__)

REREAD_SECONDS = 60.0
"""How stale a kept token may be: another process may have rotated it, or the app been removed."""

ClientFactory = Callable[[str], AsyncWebClient]
"""A Web API client for one token (paced within that workspace's rate budget)."""
PolicyFor = Callable[[str], AccessPolicy]
"""The access policy of one install, by its data key (a team id, or an org's enterprise id)."""


@dataclass
class _Kept:
    workspace: Workspace
    bot: Bot
    read_at: float


async def _workspace_url(client: AsyncWebClient) -> str | None:
    """`https://acme.slack.com/`, for links to threads (None when Slack will not say now)."""
    try:
        url = (await client.auth_test()).get("url")
    except SLACK_ERRORS as error:
        logger.info("auth.test failed: %s", error)
        return None
    return url if isinstance(url, str) and url else None


class InstalledWorkspaces:
    """Every install Slack's OAuth flow saved: a `WorkspaceResolver`."""

    def __init__(
        self, store: Store, rotator: OneRefreshAtATime, client_for: ClientFactory, policy_for: PolicyFor,
        channels: ChannelSettingsBook, *, minutes_before_expiration: int = DEFAULT_MINUTES_BEFORE_EXPIRATION,
    ) -> None:
        self.store = store
        self.rotator = rotator
        self._client_for = client_for
        self._policy_for = policy_for
        self._channels = channels
        self._minutes = minutes_before_expiration
        self._kept: dict[InstallKey, _Kept] = {}
        self._keys: dict[tuple[str, str], InstallKey] = {}
        """Which install serves a (team, enterprise) a request named (an org's, for its workspaces)."""
        self._reading: dict[InstallKey, asyncio.Lock] = {}

    async def resolve(self, team_id: str | None, enterprise_id: str | None = None) -> Workspace | None:
        """The install serving that workspace (its own, else its org's), or None where threadbox is
        not installed. A queued item names its install by its data key, as `team_id`."""
        asked = (team_id or "", enterprise_id or "")
        key = self._keys.get(asked)
        kept = self._kept.get(key) if key is not None else None
        if kept is not None and self._fresh(kept):
            return kept.workspace
        found = await self.store.find_installation(*asked)
        if found is None:
            self._keys.pop(asked, None)
            return None
        self._keys[asked] = found.key
        async with self._reading.setdefault(found.key, asyncio.Lock()):
            kept = self._kept.get(found.key)
            if kept is not None and self._fresh(kept):
                return kept.workspace
            bot = bot_of(found.bot)
            rotated = await self.rotator.perform_bot_token_rotation(bot=bot, minutes_before_expiration=self._minutes)
            bot = rotated or bot
            return (await self._keep(found.key, bot)).workspace

    async def in_shared_channel(self, workspace: Workspace, channel_id: str, *, claim: bool) -> Workspace:
        """A Slack Connect channel two installs share is answered by the one that saw it first:
        its threads are kept once, whichever install Slack brings an event (or a command, or a
        button press) through."""
        home = await self.store.shared_channel_home(channel_id, workspace.team_id, claim=claim)
        if home is None or home == workspace.team_id:
            return workspace
        return await self.resolve(home) or workspace

    def forget(self, key: InstallKey) -> None:
        """The install is gone (uninstalled): nothing of it is kept."""
        self._kept.pop(key, None)
        self._reading.pop(key, None)
        for asked, served_by in list(self._keys.items()):
            if served_by == key:
                del self._keys[asked]

    def _fresh(self, kept: _Kept) -> bool:
        return time.monotonic() - kept.read_at < REREAD_SECONDS and not expiring(kept.bot, self._minutes)

    async def _keep(self, key: InstallKey, bot: Bot) -> _Kept:
        kept = self._kept.get(key)
        if kept is not None and kept.workspace.bot_user_id == bot.bot_user_id:
            kept.workspace.client.token = bot.bot_token  # the same workspace, its caches kept
            kept.bot, kept.read_at = bot, time.monotonic()
            return kept
        client = self._client_for(bot.bot_token)  # a new install, or installed again
        data_key = key.data_key
        workspace = Workspace(
            team_id=data_key,
            enterprise_id=key.enterprise_id or None,
            bot_user_id=bot.bot_user_id,
            client=client,
            access=AccessControl(
                client, lambda: self._policy_for(data_key), home_team_id=key.team_id,
                home_enterprise_id=key.enterprise_id,
            ),
            channels=self._channels,
            url=await _workspace_url(client),
            org_wide=bot.is_enterprise_install,
        )
        kept = self._kept[key] = _Kept(workspace, bot, time.monotonic())
        return kept
