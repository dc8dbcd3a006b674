"""Installations by Slack's OAuth flow, the flow's one-time states, and forgetting a workspace.

An installation is keyed by enterprise and team (`""` where Slack gives none: a workspace
outside Enterprise Grid has no enterprise, an org-wide install no team). The store keeps the
install's records as the bot hands them over (slack_sdk's, as JSON); what they mean is the
bot's (`bot/installs`). Written once over a `Connector`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from .connector import Connector
from .models import ThreadKey

# Everything kept of a workspace, deleted when it uninstalls (deliveries first: they hang off
# the queue's rows).
FORGOTTEN_WITH_WORKSPACE = (
    "forget_team_deliveries", "forget_team_reservations", "forget_team_queue", "forget_team_claims",
    "forget_team_history", "forget_team_conversations", "forget_team_participants", "forget_team_notes",
    "forget_team_usage", "forget_team_stop_requests", "forget_team_viewing", "forget_team_feedback",
    "forget_team_channel_settings", "forget_team_thread_files", "forget_team_schedules",
    "forget_team_shared_channels",
)


@dataclass(frozen=True)
class InstallKey:
    """Where an install is: `team_id` "" for an org-wide install, `enterprise_id` "" outside Grid."""

    enterprise_id: str
    team_id: str

    @property
    def data_key(self) -> str:
        """What the bot's data of this install is keyed by (`ThreadKey.team_id`): the workspace,
        or for an org-wide install the organisation (its channels' ids are unique in it)."""
        return self.team_id or self.enterprise_id

    def params(self) -> dict[str, str]:
        return {"enterprise": self.enterprise_id, "team": self.team_id}


@dataclass(frozen=True)
class StoredInstallation:
    key: InstallKey
    bot: dict[str, Any]
    installation: dict[str, Any] | None


class InstallationStore:
    connector: Connector

    async def save_installation(
        self, key: InstallKey, *, org: bool, bot: dict[str, Any], installation: dict[str, Any] | None = None
    ) -> None:
        """Keep an install (a reinstall replaces it; `installation` None keeps the earlier one)."""
        await self.connector.execute(
            "save_installation",
            {**key.params(), "org": int(org), "bot": json.dumps(bot),
             "installation": json.dumps(installation) if installation is not None else None, "at": time.time()},
        )

    async def find_installation(self, team_id: str, enterprise_id: str = "") -> StoredInstallation | None:
        """The install serving a workspace: its own, else its organisation's org-wide one.
        `enterprise_id` "" with a team: whichever organisation it is in; or `team_id` may be a
        data key (`InstallKey.data_key`), an org's enterprise id."""
        row = None
        if team_id:
            row = await self.connector.one("team_installation", {"team": team_id, "enterprise": enterprise_id})
        if row is None and (enterprise_id or team_id):
            row = await self.connector.one("org_installation", {"enterprise": enterprise_id or team_id})
        if row is None:
            return None
        installation = json.loads(row[3]) if row[3] else None
        return StoredInstallation(InstallKey(str(row[0]), str(row[1])), json.loads(row[2]), installation)

    async def delete_installation(self, key: InstallKey) -> None:
        await self.connector.execute("delete_installation", key.params())

    async def start_token_refresh(self, key: InstallKey, seconds: float) -> bool:
        """Become, for `seconds`, the one process refreshing the install's token (False: another is)."""
        now = time.time()
        params = {**key.params(), "until": now + seconds, "at": now}
        return await self.connector.execute("start_token_refresh", params) == 1

    async def end_token_refresh(self, key: InstallKey) -> None:
        await self.connector.execute("end_token_refresh", key.params())

    async def issue_oauth_state(self, state: str, seconds: float) -> None:
        now = time.time()
        async with self.connector.transaction() as db:
            await db.execute("prune_oauth_states", {"at": now})
            await db.execute("issue_oauth_state", {"state": state, "expires": now + seconds})

    async def consume_oauth_state(self, state: str) -> bool:
        """True once for a state issued and not yet expired (a replayed one is refused)."""
        row = await self.connector.one("consume_oauth_state", {"state": state})
        return row is not None and float(row[0]) >= time.time()

    async def shared_channel_home(self, channel_id: str, team_id: str, *, claim: bool) -> str | None:
        """The install (data key) that answers in a Slack Connect channel: the first to claim it
        (`claim`: this one may; without, None where none has)."""
        async with self.connector.transaction(urgent=True) as db:
            if claim:
                await db.execute("claim_shared_channel", {"channel": channel_id, "team": team_id})
            row = await db.one("shared_channel_home", {"channel": channel_id})
        return str(row[0]) if row else None

    async def workspace_files(self, team_id: str) -> tuple[list[ThreadKey], list[str]]:
        """A workspace's threads, and the Files API files its queue and its threads' file lists
        name (the threads' histories name more: the caller reads those)."""
        rows = await self.connector.all("team_conversations", {"team": team_id})
        threads = [ThreadKey(team_id, str(channel), str(ts)) for channel, ts in rows]
        files = [str(r[0]) for r in await self.connector.all("team_thread_file_ids", {"team": team_id})]
        files += [str(r[0]) for r in await self.connector.all("team_owed_file_ids", {"team": team_id})]
        for (uploads,) in await self.connector.all("team_uploads", {"team": team_id}):
            files += [str(upload["file_id"]) for upload in json.loads(uploads)]
        return threads, files

    async def forget_workspace(self, team_id: str) -> None:
        """Delete everything kept of a workspace (or organisation), in one transaction."""
        async with self.connector.transaction() as db:
            for query in FORGOTTEN_WITH_WORKSPACE:
                await db.execute(query, {"team": team_id})
