"""Persistence of threads, their containers and history, and the inbox of accepted messages."""

from .models import Conversation, InboxMessage, ThreadKey, ThreadSummary
from .sqlite import SQLiteStore

Store = SQLiteStore


async def open_store(database_url: str) -> Store:
    """Open (creating and migrating as needed) the database named by `DATABASE_URL`."""
    if not database_url.startswith("sqlite:"):
        scheme = database_url.split(":", 1)[0]
        raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r}: use sqlite:///path")
    store = SQLiteStore.from_url(database_url)
    await store.open()
    return store


__all__ = [
    "Conversation",
    "InboxMessage",
    "Store",
    "SQLiteStore",
    "ThreadKey",
    "ThreadSummary",
    "open_store",
]
