"""Plain data types shared by the bot and every storage backend."""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass, field
from typing import Any, Literal

from .connector import Row

ItemKind = Literal["message", "reset"]
# What a stop request found: a running turn now stopping, nothing running, or a twin event.
StopOutcome = Literal["stopping", "idle", "duplicate"]
# What a workspace's usage can be summed by (the Home tab's totals for admins).
UsageGroup = Literal["person", "channel"]


class LeaseLost(Exception):
    """This process no longer holds the thread's lease (it expired, or another process took it)."""


@dataclass(frozen=True)
class Lease:
    """One claim of a thread: the process, and the claim's generation (each claim of the
    thread counts one up), which every write of the turn checks."""

    owner: str
    generation: int

    def params(self) -> dict[str, Any]:
        return {"owner": self.owner, "generation": self.generation}


NoticeKind = Literal["queued", "stop", "room", "any"]


@dataclass(frozen=True)
class QueueNotice:
    """What a notification between processes says changed, so each can tell whether it cares:
    work queued in a thread, a stop asked for a running item, room under the caps, or (an
    empty or unknown payload) anything."""

    kind: NoticeKind
    thread: ThreadKey | None = None
    item_id: int | None = None

    def encode(self) -> str:
        thread = astuple(self.thread) if self.thread else None
        return json.dumps([self.kind, thread, self.item_id])

    @classmethod
    def decode(cls, payload: str) -> QueueNotice:
        try:
            kind, thread, item_id = json.loads(payload)
            if kind not in ("queued", "stop", "room"):
                raise ValueError(kind)
            return cls(kind, ThreadKey(*thread) if thread else None, int(item_id) if item_id is not None else None)
        except (ValueError, TypeError):
            return cls("any")


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
class TurnLimits:
    """Caps on turns running at once (None: no cap): per person, and over every process."""

    per_person: int | None = None
    overall: int | None = None

    @property
    def any(self) -> bool:
        return self.per_person is not None or self.overall is not None


@dataclass(frozen=True)
class Claim:
    """A thread this process took, under `lease`."""

    thread: ThreadKey
    lease: Lease


@dataclass(frozen=True)
class Enqueued:
    """A newly queued item, and whether it waits behind other work of its thread."""

    id: int
    waits: bool


@dataclass(frozen=True)
class QueueItem:
    """The head of a thread's queue, as the process holding the thread's lease sees it.

    `answered`: an earlier attempt's answer is stored, so only the reply and files are left.
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
    marked_queued: bool = False
    attempts: int = 0
    user_files: list[tuple[str, int]] = field(default_factory=list)
    stop_requested_by: str | None = None
    addressed: bool = False
    """A mention or DM: its turn makes the thread the bot's (its person let in)."""
    uploads: list[dict[str, Any]] = field(default_factory=list)
    """The Files API copies an earlier attempt made of its files (`note_upload`)."""
    schedule_id: int | None = None
    """A scheduled run's schedule (`!schedule`)."""
    admitted: bool = False
    """Counted against the caps on concurrent turns (when it was claimed, or since)."""
    lease: Lease | None = None
    """The claim under which the item was taken: the turn's writes check it."""

    @classmethod
    def from_row(cls, thread: ThreadKey, row: Row, lease: Lease | None = None, *, admitted: bool = False) -> QueueItem:
        """The head item as a backend reads it, before it is marked running (JSON columns may
        arrive as text or already decoded)."""

        def decoded(value: Any) -> Any:
            return json.loads(value) if isinstance(value, str) else value

        return cls(
            id=row["id"],
            thread=thread,
            kind=row["kind"],
            user_id=row["user_id"],
            message_ts=row["message_ts"],
            text=row["text"],
            files=decoded(row["files"]),
            response_url=row["response_url"],
            replace_original=bool(row["replace_original"]),
            reply_ts=row["reply_ts"],
            answered=bool(row["answered"]),
            marked_queued=bool(row["marked_queued"]),
            attempts=row["attempts"] + 1,
            user_files=[(str(name), int(size)) for name, size in decoded(row["user_files"])],
            stop_requested_by=row["stop_requested_by"],
            addressed=bool(row["addressed"]),
            uploads=decoded(row["uploads"]),
            schedule_id=row["schedule_id"],
            admitted=admitted,
            lease=lease,
        )

    def as_message(self) -> InboxMessage:
        return InboxMessage(self.thread, self.message_ts or "", self.user_id, self.text, self.files, self.id)


@dataclass(frozen=True)
class Delivery:
    """One output file of an answered turn, to be shared in the thread exactly once."""

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
    skills: list[dict[str, Any]] | None = None
    """The skills the thread was first answered with (None: not answered since its last reset)."""
    settings_seen: str | None = None
    """What the thread's last turn ran with (`ChannelSettings.seen`): a change is told once."""
    inherited_files: list[dict[str, Any]] | None = None
    """A fork's files from its original (file_id, name, size), for its first turn's container."""


@dataclass(frozen=True)
class ThreadSummary:
    """A user's active thread, for the `/reset` picker."""

    thread: ThreadKey
    last_text: str
    updated_at: float


@dataclass(frozen=True)
class Feedback:
    """One press of an answer's feedback buttons."""

    thread: ThreadKey
    reply_ts: str
    """The answer's message (where the buttons are)."""
    user_id: str
    rating: str
    """`good` or `bad`."""
    model: str
    item_id: int | None = None
    """The queue item of the turn that answered."""


@dataclass(frozen=True)
class Usage:
    """Tokens and code runs of one turn (or a sum of turns), as the Messages API reports them."""

    input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    code_runs: int = 0
    turns: int = 0
    web_searches: int = 0
    web_fetches: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(mine + theirs for mine, theirs in zip(astuple(self), astuple(other), strict=True)))

    @property
    def prompt_tokens(self) -> int:
        """Every input token, however it was billed."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    @property
    def total_tokens(self) -> int:
        """Every token in and out."""
        return self.prompt_tokens + self.output_tokens


@dataclass(frozen=True)
class PersonThread:
    """A thread someone talked to the bot in, for their Home tab.

    `last_active` (epoch seconds) is their last message there or the thread's last turn,
    whichever came later; `usage` is everything the thread's turns used, everyone's.
    """

    thread: ThreadKey
    last_text: str
    last_active: float
    usage: Usage
