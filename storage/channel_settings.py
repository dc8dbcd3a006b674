"""Channel settings set in Slack (`/threadbox settings`): one row per channel, the keys it sets.

The store keeps them as given; what they mean, and what a channel falls back to, is the bot's
(`bot/channels`). Written once over a `Connector`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .connector import Connector, lock_key


@dataclass(frozen=True)
class StoredSettings:
    """The keys one channel sets in Slack, and who set them last (epoch seconds)."""

    values: dict[str, Any]
    changed_by: str
    changed_at: float


class ChannelSettingsStore:
    connector: Connector

    async def channel_settings(self, team_id: str, channel_id: str) -> StoredSettings | None:
        row = await self.connector.one("channel_settings", {"team": team_id, "channel": channel_id})
        return StoredSettings(json.loads(row[0]), str(row[1]), float(row[2])) if row else None

    async def team_channel_settings(self, team_id: str) -> dict[str, StoredSettings]:
        """Every channel of the workspace that has settings set in Slack, by channel id."""
        rows = await self.connector.all("team_channel_settings", {"team": team_id})
        return {str(c): StoredSettings(json.loads(v), str(by), float(at)) for c, v, by, at in rows}

    async def keep_channel_settings(
        self, team_id: str, channel_id: str, values: dict[str, Any], user_id: str
    ) -> StoredSettings | None:
        """Replace what the channel sets (nothing left: the row goes); returns what it set
        before, for the audit trail. Two people saving at once take turns."""
        key = {"team": team_id, "channel": channel_id}
        async with self.connector.transaction() as db:
            await db.lock(lock_key(f"settings:{team_id}:{channel_id}"))
            row = await db.one("channel_settings", key)
            before = StoredSettings(json.loads(row[0]), str(row[1]), float(row[2])) if row else None
            if values:
                await db.execute("keep_channel_settings", {**key, "settings": json.dumps(values), "user": user_id})
            else:
                await db.execute("drop_channel_settings", key)
        return before
