"""Files owed by answered turns: each shared in its thread exactly once, even across a crash.

Written once over a `Connector`; the SQL of each query is in `queries/<dialect>.sql`.
"""

from __future__ import annotations

from .connector import Connector
from .models import Delivery


class DeliveryStore:
    """An answered turn's output files, and how far sharing each of them got."""

    connector: Connector

    async def pending_deliveries(self, item_id: int) -> list[Delivery]:
        rows = await self.connector.all("pending_deliveries", {"item": item_id})
        return [Delivery(int(position), file_id, slack_file_id) for position, file_id, slack_file_id in rows]

    async def delivery_started(self, item_id: int, position: int, slack_file_id: str) -> None:
        """The Slack file the upload became, known before the upload completes."""
        await self.connector.execute(
            "delivery_started", {"item": item_id, "position": position, "slack_file_id": slack_file_id}
        )

    async def delivery_done(self, item_id: int, position: int) -> None:
        await self.connector.execute("delivery_done", {"item": item_id, "position": position})
