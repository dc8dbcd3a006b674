"""The workspace seam: every request and every turn finds its workspace here.

A `Workspace` is what acting in one Slack workspace takes: its ids, the bot user, a Slack
client with the right token, the access policy applied with that client, and the settings of
its channels. A `WorkspaceResolver` hands one out per request: `SingleWorkspace` serves the one
bot token (`SLACK_BOT_TOKEN`), `bot.installs.InstalledWorkspaces` every install of the OAuth flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from slack_sdk.web.async_client import AsyncWebClient

from storage import InstallKey

from .channels.book import ChannelSettings, ChannelSettingsBook
from .outbound.stream import StreamSupport
from .policy.access import AccessControl, AccessPolicy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workspace:
    """One workspace (or, for an org-wide install, one organisation) as threadbox acts in it."""

    team_id: str
    enterprise_id: str | None
    bot_user_id: str
    client: AsyncWebClient
    access: AccessControl
    channels: ChannelSettingsBook
    url: str | None = None
    """`https://acme.slack.com/`, for links to threads without a `chat.getPermalink` each."""
    streams: StreamSupport = field(default_factory=StreamSupport)
    """What this workspace's Slack accepts on a stream (learned by the first answer)."""
    org_wide: bool = False
    """An org-wide install (Enterprise Grid): `team_id` is the organisation's enterprise id."""

    @property
    def install_key(self) -> InstallKey:
        return InstallKey(self.enterprise_id or "", "" if self.org_wide else self.team_id)

    async def team_of(self, user_id: str) -> str:
        """The workspace a person answered here is in (a stream's `recipient_team_id`)."""
        return await self.access.team_of(user_id) if self.org_wide else self.team_id

    async def settings_for(self, channel_id: str) -> ChannelSettings:
        """The settings of one channel, as its layers leave them now."""
        return await self.channels.settings_for(self.team_id, channel_id)

    def __deepcopy__(self, memo: dict[int, Any]) -> Workspace:
        """Bolt deep-copies a request's context for each lazy listener: the copy is this same
        workspace, with its client and its caches of people and channels."""
        return self


class WorkspaceResolver(Protocol):
    """Finds the workspace a request or a queued item belongs to."""

    async def resolve(self, team_id: str | None, enterprise_id: str | None = None) -> Workspace | None:
        """The workspace, or None when threadbox is not installed there."""

    async def in_shared_channel(self, workspace: Workspace, channel_id: str, *, claim: bool) -> Workspace:
        """The workspace that answers in a Slack Connect channel (one of several installs may
        bring its requests); `claim`: Slack says the channel is one, and this install may become
        the one that answers there."""

    def forget(self, key: InstallKey) -> None:
        """The install is gone: keep nothing of it."""


class SingleWorkspace:
    """The one workspace a bot token (`SLACK_BOT_TOKEN`) is installed in."""

    def __init__(
        self, client: AsyncWebClient, policy_for: Callable[[str], AccessPolicy], channels: ChannelSettingsBook
    ) -> None:
        """`policy_for`: a workspace's access policy by its team id, as the settings leave it now."""
        self._client = client
        self._policy_for = policy_for
        self._channels = channels
        self._workspace: Workspace | None = None

    async def start(self) -> Workspace:
        """Identify the bot (`auth.test`); a refused token stops start-up."""
        identity = await self._client.auth_test()
        team_id = str(identity["team_id"])
        url = identity.get("url")
        self._workspace = Workspace(
            team_id=team_id,
            enterprise_id=_string(identity.get("enterprise_id")),
            bot_user_id=str(identity["user_id"]),
            client=self._client,
            access=AccessControl(
                self._client, lambda: self._policy_for(team_id), home_team_id=team_id,
                home_enterprise_id=_string(identity.get("enterprise_id")) or "",
            ),
            channels=self._channels,
            url=_string(url),
        )
        return self._workspace

    async def resolve(self, team_id: str | None, enterprise_id: str | None = None) -> Workspace | None:
        """Every request is the token's workspace (Slack Connect channels included)."""
        return self._workspace

    async def in_shared_channel(self, workspace: Workspace, channel_id: str, *, claim: bool) -> Workspace:
        return workspace

    def forget(self, key: InstallKey) -> None:
        """The token's workspace stays this process's until it stops (its token no longer works)."""


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
