"""Plain data types shared by the bot and every storage backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ItemKind = Literal["message", "reset"]


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
class ResetRequest:
    """A reset asked for outside the thread (command, shortcut, button): a queue item too.

    `response_url` is where the person who asked hears the outcome when its turn comes.
    """

    thread: ThreadKey
    user_id: str
    response_url: str | None = None
    replace_original: bool = False


@dataclass(frozen=True)
class Enqueued:
    """A newly queued item, and whether it waits behind other work of its thread."""

    id: int
    waits: bool


@dataclass(frozen=True)
class QueueItem:
    """The head of a thread's queue, as the process holding the thread's lease sees it.

    `interrupted`: an earlier attempt was running when its process died or let go;
    `answered`: that attempt's answer is stored, so only the reply and files are left.
    """

    id: int
    thread: ThreadKey
    kind: ItemKind
    user_id: str
    message_ts: str | None = None
    text: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    response_url: str | None = None
    replace_original: bool = False
    reply_ts: str | None = None
    answered: bool = False
    interrupted: bool = False
    marked_queued: bool = False
    attempts: int = 0
    user_files: list[tuple[str, int]] = field(default_factory=list)

    def as_message(self) -> InboxMessage:
        return InboxMessage(self.thread, self.message_ts or "", self.user_id, self.text, self.files, self.id)


@dataclass(frozen=True)
class Delivery:
    """One output file of an answered turn, to be shared in the thread exactly once."""

    item_id: int
    position: int
    file_id: str
    slack_file_id: str | None = None


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
