"""Storage, the end of the data path: threads, their containers and history, the durable
per-thread queue, files owed and usage.

`Store` is written once over a `Connector`; `sqlite.py` and `postgres.py` are the two
connectors, `queries/<dialect>.sql` their named queries (`queries/common.sql` those alike in
both), `migrations/<dialect>/` their schema.
"""

import sqlite3

import asyncpg

from .channel_settings import StoredSettings
from .installations import InstallKey, StoredInstallation
from .models import (
    Claim,
    Conversation,
    Delivery,
    Enqueued,
    Feedback,
    InboxMessage,
    Lease,
    LeaseLost,
    PersonThread,
    QueueItem,
    QueueNotice,
    ResetRequest,
    StopOutcome,
    ThreadKey,
    ThreadSummary,
    TurnLimits,
    Usage,
    UsageGroup,
)
from .postgres import ACQUIRE_SECONDS, POOL_SIZE, PostgresConnector
from .schedules import Schedule
from .sqlite import SQLiteStore, sqlite_path
from .store import Store
from .thread_files import ThreadFile

POSTGRES_SCHEMES = ("postgres://", "postgresql://")
# What a database that is away for a moment raises (restarting, unreachable, locked): worth
# one log line and another try, never a traceback or a lost message.
DATABASE_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    sqlite3.OperationalError,
)


def store_for_url(database_url: str, *, pool_size: int = POOL_SIZE, acquire_seconds: float = ACQUIRE_SECONDS) -> Store:
    """The store `DATABASE_URL` names, not yet opened (`pool_size`, `acquire_seconds`: PostgreSQL's
    connection pool, and the longest a call waits for one of its connections)."""
    if database_url.startswith("sqlite:"):
        return SQLiteStore(sqlite_path(database_url))
    if database_url.startswith(POSTGRES_SCHEMES):
        return Store(PostgresConnector(database_url, max_size=pool_size, acquire_seconds=acquire_seconds))
    scheme = database_url.split(":", 1)[0]
    raise ValueError(
        f"unsupported DATABASE_URL scheme {scheme!r}: use sqlite:///path or postgresql://user@host/db"
    )


async def open_store(
    database_url: str, *, pool_size: int = POOL_SIZE, acquire_seconds: float = ACQUIRE_SECONDS
) -> Store:
    """Open (creating and migrating as needed) the database named by `DATABASE_URL`."""
    store = store_for_url(database_url, pool_size=pool_size, acquire_seconds=acquire_seconds)
    await store.open()
    return store


__all__ = [
    "ACQUIRE_SECONDS",
    "DATABASE_OUTAGES",
    "POOL_SIZE",
    "Claim",
    "Conversation",
    "Delivery",
    "Enqueued",
    "Feedback",
    "InboxMessage",
    "InstallKey",
    "Lease",
    "LeaseLost",
    "POSTGRES_SCHEMES",
    "PersonThread",
    "QueueItem",
    "QueueNotice",
    "ResetRequest",
    "Schedule",
    "SQLiteStore",
    "StopOutcome",
    "StoredInstallation",
    "StoredSettings",
    "ThreadFile",
    "Store",
    "ThreadKey",
    "ThreadSummary",
    "TurnLimits",
    "Usage",
    "UsageGroup",
    "open_store",
    "store_for_url",
]
