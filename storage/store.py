"""The `Store`: everything the bot keeps, written once over whichever `Connector` keeps it.

Two connectors: SQLite (the default, one host) and PostgreSQL (any number of processes). One
contract test suite (`tests/test_store_contract.py`) holds the store to the same behaviour on both.
"""

from __future__ import annotations

from collections.abc import Callable

from .channel_settings import ChannelSettingsStore
from .connector import Connector, migrations
from .conversations import ConversationStore
from .deliveries import DeliveryStore
from .installations import InstallationStore
from .models import LeaseLost
from .people import PeopleStore
from .queue import QueueStore
from .schedules import ScheduleStore
from .skills import SkillStore
from .thread_files import ThreadFileStore
from .usage import UsageStore

__all__ = ["LeaseLost", "Store", "migrations"]


class Store(
    QueueStore, ConversationStore, DeliveryStore, UsageStore, PeopleStore, SkillStore, ChannelSettingsStore,
    ThreadFileStore, ScheduleStore, InstallationStore,
):
    """Conversations, their history, the durable per-thread queue with its leases, usage,
    what people look at and think of the answers, and the channels' settings."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    async def open(self) -> None:
        await self.connector.open()

    async def close(self) -> None:
        await self.connector.close()

    async def schema_version(self) -> int:
        return await self.connector.schema_version()

    async def check_writable(self) -> None:
        """Raise when the database cannot take a write (the health check)."""
        await self.connector.execute("check_writable")

    async def listen(self, wake: Callable[[str], None]) -> None:
        """Call `wake` with a `QueueNotice` payload when another process changes the queue
        (where the backend can)."""
        await self.connector.listen(wake)
