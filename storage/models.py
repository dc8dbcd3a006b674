"""Plain data types shared by the bot and every storage backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ThreadKey:
    """One conversation: a Slack thread, or (thread_ts == "") the top level of a DM."""

    team_id: str
    channel_id: str
    thread_ts: str

    @property
    def is_dm_top_level(self) -> bool:
        return self.thread_ts == ""


@dataclass(frozen=True)
class InboxMessage:
    """A Slack message accepted for an answer, persisted before it is acknowledged."""

    thread: ThreadKey
    message_ts: str
    user_id: str
    text: str
    files: list[dict[str, Any]] = field(default_factory=list)
    id: int | None = None


@dataclass(frozen=True)
class Conversation:
    """What a thread's next turn needs: its container and the history so far."""

    thread: ThreadKey
    container_id: str | None
    container_expires_at: float | None
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class ThreadSummary:
    """A user's active thread, for the `/reset` picker."""

    thread: ThreadKey
    last_text: str
    updated_at: float
