"""The `Store` protocol: everything the bot keeps, whichever database keeps it.

Two implementations: `SQLiteStore` (the default, one host) and `PostgresStore` (any number of
processes). One contract test suite (`tests/test_store_contract.py`) holds both to it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from importlib import resources
from typing import Any, Protocol

from .models import (
    Conversation,
    Delivery,
    Enqueued,
    InboxMessage,
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


class LeaseLost(Exception):
    """This process no longer holds the thread's lease (it expired, or another process took it)."""


def migrations(backend: str) -> list[tuple[int, str]]:
    """The numbered SQL migration files of a backend, in order: [(number, script)]."""
    folder = resources.files("storage").joinpath("migrations", backend)
    scripts = sorted(
        (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    numbers = [number for number, _ in scripts]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {numbers}")
    return scripts


class Store(Protocol):
    """Conversations, their history, and the durable per-thread queue with its leases."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def check_writable(self) -> None:
        """Raise when the database cannot take a write (the health check)."""

    # --- the queue -------------------------------------------------------------------------

    async def enqueue_message(self, message: InboxMessage, *, starts_conversation: bool) -> Enqueued | None:
        """Store a message for answering (and the thread as the bot's when it starts one).

        None when the same Slack message was stored before (a retry, or the twin event).
        """

    async def enqueue_reset(self, request: ResetRequest) -> Enqueued: ...

    async def claim_thread(
        self, owner: str, lease_seconds: float, exclude: Collection[ThreadKey], limits: TurnLimits = TurnLimits()
    ) -> ThreadKey | None:
        """Take the lease of the thread with the oldest open work that no live lease holds,
        passing over threads whose next turn `limits` holds back."""

    async def next_item(self, thread: ThreadKey, owner: str, lease_seconds: float) -> QueueItem | None:
        """The thread's oldest open item, now running; None when there is none.

        Raises `LeaseLost` when `owner` no longer holds the thread.
        """

    async def admit(self, item_id: int, thread: ThreadKey, owner: str, limits: TurnLimits) -> bool:
        """Count a running turn against `limits`, one admission at a time across processes.

        False when a cap is full: the item is pending again and `owner` gives the thread up,
        so whichever process has room claims it once a turn ends.
        """

    async def running_turns(self, team_id: str, user_id: str) -> tuple[int, int]:
        """Admitted turns running now: (the person's, everyone's)."""

    async def held_back(self, limits: TurnLimits, limit: int = 20) -> list[InboxMessage]:
        """New turns at the head of a free thread that a full cap holds back, not yet marked queued."""

    async def release_thread(self, thread: ThreadKey, owner: str) -> bool:
        """Give the lease up; False (lease kept) when work arrived in the meantime."""

    async def renew_leases(self, owner: str, lease_seconds: float) -> set[ThreadKey]:
        """Extend every lease `owner` holds; returns the threads it still holds."""

    async def hand_back(self, owner: str) -> int:
        """Shutdown: running items become pending again and `owner`'s leases end at once."""

    async def next_lease_expiry(self, owner: str) -> float | None:
        """Seconds until the first lease another process holds on a thread with open work runs
        out, if any (a lease left behind on a finished thread is nothing to wait for)."""

    async def finish_item(self, item_id: int) -> None: ...

    async def set_reply_ts(self, item_id: int, reply_ts: str | None) -> None:
        """The reply message a running turn is writing; None once it is finished."""

    async def request_stop(
        self, thread: ThreadKey, user_id: str, *, message_ts: str | None = None, item_id: int | None = None
    ) -> StopOutcome:
        """Ask the process running the thread's turn (`item_id`'s, if given) to stop it.

        `message_ts`: the Slack message that asked; its twin event is then a "duplicate".
        """

    async def stop_requests(self, item_ids: Collection[int]) -> dict[int, str]:
        """Of these running items, those someone asked to stop, with who asked."""

    async def mark_queued(self, item_id: int) -> bool:
        """Note that the item shows the "queued" reaction; False when it is no longer pending, or
        was marked already (by this process or another)."""

    async def item_state(self, item_id: int) -> str | None: ...

    async def count_waiting(self) -> int:
        """Items (of every process) not started yet: the queue depth the metrics report."""

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` when another process queues or hands back work (where the backend can)."""

    async def prune(self, older_than_seconds: float) -> int:
        """Forget finished items of threads idle that long; never those of live threads."""

    # --- conversations ---------------------------------------------------------------------

    async def has_conversation(self, thread: ThreadKey) -> bool: ...

    async def load_conversation(self, thread: ThreadKey) -> Conversation: ...

    async def save_turn(
        self,
        item_id: int,
        thread: ThreadKey,
        messages: list[dict[str, Any]],
        container_id: str | None,
        container_expires_at: float | None,
        outputs: list[str],
        user_files: list[tuple[str, int]],
        earlier_history: list[dict[str, Any]] | None = None,
    ) -> None:
        """Append a finished turn, keep its container, and mark its item answered with the
        files it still has to deliver, atomically: a crash later never runs the model again.

        `earlier_history`: the thread's history before this turn, stored in place of the old
        (the turn found files in it that the Files API no longer has).
        """

    async def reset(self, thread: ThreadKey) -> bool:
        """Forget container and history; False when the bot had no conversation there."""

    async def add_note(self, message: InboxMessage) -> None:
        """Keep a thread message that did not ask the bot anything, for the next turn's context."""

    async def notes_before(self, thread: ThreadKey, before_ts: str) -> list[InboxMessage]:
        """The kept messages of a thread older than `before_ts`, oldest first."""

    async def drop_notes(self, thread: ThreadKey, message_ts: list[str]) -> None:
        """Forget kept messages once a turn has handed them to Claude."""

    async def idle_threads(self, older_than_seconds: float, limit: int = 100) -> list[ThreadKey]:
        """Threads untouched that long that still keep a container, history or participants."""

    async def forget(self, thread: ThreadKey) -> None:
        """Retention: drop a thread's container, history and who said what (the thread stays known)."""

    async def active_threads(self, team_id: str, channel_id: str, user_id: str, limit: int = 10) -> list[ThreadSummary]: ...

    async def person_threads(self, team_id: str, user_id: str, limit: int = 100) -> list[PersonThread]:
        """The threads a person talked to the bot in (until retention forgets who said what),
        the most recently active first, each with everything its turns used."""

    # --- files owed by answered turns ------------------------------------------------------

    async def pending_deliveries(self, item_id: int) -> list[Delivery]: ...

    async def delivery_started(self, item_id: int, position: int, slack_file_id: str) -> None: ...

    async def delivery_done(self, item_id: int, position: int) -> None: ...

    # --- usage -----------------------------------------------------------------------------

    async def record_usage(self, thread: ThreadKey, user_id: str, model: str, usage: Usage) -> None:
        """Book one turn's tokens and code runs to its thread and to the person who asked."""

    async def thread_usage(self, thread: ThreadKey) -> Usage:
        """Everything a thread's turns used, resets included."""

    async def user_usage(self, team_id: str, user_id: str, since: float = 0.0) -> Usage:
        """Everything one person's turns used since `since` (epoch seconds), in every thread."""

    async def team_usage(self, team_id: str, since: float = 0.0) -> Usage:
        """Everything a workspace's turns used since `since` (epoch seconds)."""

    async def usage_by(self, team_id: str, group: UsageGroup, since: float = 0.0) -> dict[str, Usage]:
        """A workspace's usage since `since` (epoch seconds), summed per person (user id) or per
        channel (channel id); who or what used nothing is absent."""
