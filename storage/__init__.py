"""Storage, the end of the data path: threads, their containers and history, the durable
per-thread queue, files owed and usage.

`Store` is written once over a `Connector`; `sqlite.py` and `postgres.py` are the two
connectors, `queries/<dialect>.sql` their named queries, `migrations/<dialect>/` their schema.
"""

from .models import (
    Conversation,
    Delivery,
    Enqueued,
    Feedback,
    InboxMessage,
    LeaseLost,
    PersonThread,
    QueueItem,
    ResetRequest,
    StopOutcome,
    ThreadKey,
    ThreadSummary,
    TurnLimits,
    Usage,
    UsageGroup,
)
from .postgres import PostgresConnector
from .sqlite import SQLiteStore, sqlite_path
from .store import Store

POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def store_for_url(database_url: str) -> Store:
    """The store `DATABASE_URL` names, not yet opened."""
    if database_url.startswith("sqlite:"):
        return SQLiteStore(sqlite_path(database_url))
    if database_url.startswith(POSTGRES_SCHEMES):
        return Store(PostgresConnector(database_url))
    scheme = database_url.split(":", 1)[0]
    raise ValueError(
        f"unsupported DATABASE_URL scheme {scheme!r}: use sqlite:///path or postgresql://user@host/db"
    )


async def open_store(database_url: str) -> Store:
    """Open (creating and migrating as needed) the database named by `DATABASE_URL`."""
    store = store_for_url(database_url)
    await store.open()
    return store


__all__ = [
    "Conversation",
    "Delivery",
    "Enqueued",
    "Feedback",
    "InboxMessage",
    "LeaseLost",
    "POSTGRES_SCHEMES",
    "PersonThread",
    "QueueItem",
    "ResetRequest",
    "SQLiteStore",
    "StopOutcome",
    "Store",
    "ThreadKey",
    "ThreadSummary",
    "TurnLimits",
    "Usage",
    "UsageGroup",
    "open_store",
    "store_for_url",
]
