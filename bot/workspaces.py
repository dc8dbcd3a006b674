"""The workspace seam: every request and every turn finds its workspace here.

A `Workspace` is what acting in one Slack workspace takes: its ids, the bot user, a Slack
client with the right token, the access policy applied with that client, and the settings of
its channels. A `WorkspaceResolver` hands one out per request; today `SingleWorkspace` serves
the one bot token, later an installation store serves many.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from slack_sdk.web.async_client import AsyncWebClient

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


class SingleWorkspace:
    """The one workspace a bot token (`SLACK_BOT_TOKEN`) is installed in."""

    def __init__(self, client: AsyncWebClient, policy: AccessPolicy, channels: ChannelSettingsBook) -> None:
        self._client = client
        self._policy = policy
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
            access=AccessControl(self._client, self._policy, home_team_id=team_id),
            channels=self._channels,
            url=_string(url),
        )
        return self._workspace

    async def resolve(self, team_id: str | None, enterprise_id: str | None = None) -> Workspace | None:
        """Every request is the token's workspace (Slack Connect channels included)."""
        return self._workspace


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
