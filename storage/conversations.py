"""Conversations: a thread's container and history, who talked in it, and the notes kept for it.

Written once over a `Connector`; the SQL of each query is in `queries/<dialect>.sql`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .connector import Connector
from .models import Conversation, InboxMessage, Lease, LeaseLost, PersonThread, ThreadKey, ThreadSummary, Usage
from .queue import thread_params

FORGOTTEN_BY_RETENTION = (
    "forget_container", "delete_history", "forget_participants", "forget_notes", "forget_thread_files",
    "forget_schedules",
)


class ConversationStore:
    """What a thread's next turn needs, and what the Home tab and the `/reset` picker list."""

    connector: Connector

    async def has_conversation(self, thread: ThreadKey) -> bool:
        """The bot's thread, or one that becomes it if its queued first message's person is
        let in when its turn comes. Asked before Slack's acknowledgement: urgent."""
        async with self.connector.transaction(readonly=True, urgent=True) as db:
            return await db.one("has_conversation", thread_params(thread)) is not None

    async def open_conversation(self, thread: ThreadKey) -> bool:
        """Make the thread the bot's (a turn of an addressed message, its person let in);
        True if it was not before."""
        return await self.connector.execute("start_conversation", thread_params(thread)) == 1

    async def owns_conversation(self, thread: ThreadKey) -> bool:
        """The thread is the bot's now (not only about to be)."""
        return await self.connector.one("owns_conversation", thread_params(thread)) is not None

    async def load_conversation(self, thread: ThreadKey) -> Conversation:
        key = thread_params(thread)
        async with self.connector.transaction(readonly=True) as db:
            row = await db.one("conversation", key)
            history = [{"role": role, "content": json.loads(content)} for role, content in await db.all("history", key)]
        expires = row[1] if row else None
        return Conversation(
            thread=thread,
            container_id=row[0] if row else None,
            container_expires_at=float(expires) if expires is not None else None,
            history=history,
            skills=json.loads(row[2]) if row and row[2] is not None else None,
            settings_seen=row[3] if row else None,
            inherited_files=json.loads(row[4]) if row and row[4] else None,
        )

    async def fork_conversation(
        self, source: ThreadKey, fork_ts: str, carried: Sequence[Mapping[str, Any]]
    ) -> None:
        """A new thread (`fork_ts`, in the source's channel) whose history is a copy of the
        source's, made the bot's, with the files (`carried`: file_id, name, size) its first
        turn puts into its own new container."""
        key, fork = thread_params(source), {**thread_params(source), "thread_ts": fork_ts}
        async with self.connector.transaction() as db:
            await db.execute("start_conversation", fork)
            await db.execute("copy_history", {**key, "to_ts": fork_ts})
            await db.execute("inherit_conversation", {**key, "to_ts": fork_ts, "files": json.dumps(list(carried))})

    async def save_turn(
        self,
        item_id: int,
        thread: ThreadKey,
        messages: Sequence[Mapping[str, Any]],
        container_id: str | None,
        container_expires_at: float | None,
        outputs: list[str],
        user_files: list[tuple[str, int]],
        earlier_history: Sequence[Mapping[str, Any]] | None = None,
        lease: Lease | None = None,
        skills: Sequence[Mapping[str, Any]] | None = None,
        settings_seen: str | None = None,
        inherited_taken: bool = False,
    ) -> None:
        """Append a finished turn, keep its container, and mark its item answered with the
        files it still has to deliver, atomically: a crash later never runs the model again.

        `earlier_history`: the thread's history before this turn, stored in place of the old
        (the turn found files in it that the Files API no longer has). `lease`: only while it
        still holds the thread, else `LeaseLost` and nothing is stored.
        """
        key = thread_params(thread)
        async with self.connector.transaction() as db:
            if lease is not None and await db.one("holds_lease", {**key, **lease.params()}) is None:
                raise LeaseLost(str(thread))
            if earlier_history is not None:
                await db.execute("delete_history", key)
                messages = [*earlier_history, *messages]
            last = await db.one("last_seq", key)
            seq = int(last[0]) if last else 0
            await db.execute_many(
                "append_history",
                [
                    {**key, "seq": seq + offset, "role": message["role"], "content": json.dumps(message["content"])}
                    for offset, message in enumerate(messages, start=1)
                ],
            )
            container = {"container_id": container_id, "expires_at": container_expires_at}
            await db.execute("keep_container", {**key, **container})
            if skills is not None:  # the thread's first list stays until it is reset
                await db.execute("keep_skills", {**key, "skills": json.dumps(list(skills))})
            if settings_seen is not None:
                await db.execute("keep_settings_seen", {**key, "seen": settings_seen})
            if inherited_taken:  # a fork's files are in its container now
                await db.execute("clear_inherited", key)
            files = json.dumps([list(f) for f in user_files])
            await db.execute("mark_answered", {"item": item_id, "user_files": files})
            owed = [{"item": item_id, "position": n, "file_id": file_id} for n, file_id in enumerate(outputs)]
            await db.execute_many("owe_delivery", owed)

    async def reset(self, thread: ThreadKey, item_id: int | None = None) -> bool:
        """Forget container and history; False when the bot had no conversation there.

        `item_id`: the queue item asking for it, marked answered in the same transaction, so a
        crash after it never runs the reset (and its confirmation) again."""
        key = thread_params(thread)
        async with self.connector.transaction() as db:
            existed = await db.execute("drop_container", key) == 1
            await db.execute("delete_history", key)
            await db.execute("forget_thread_files", key)
            if item_id is not None:
                await db.execute("settle_item", {"item": item_id})
        return existed

    async def add_note(self, message: InboxMessage) -> None:
        """Keep a thread message that did not ask the bot anything, for the next turn's context."""
        async with self.connector.transaction(urgent=True) as db:
            await db.execute(
                "add_note",
                {**thread_params(message.thread), "message_ts": message.message_ts, "user": message.user_id,
                 "text": message.text},
            )

    async def notes_before(self, thread: ThreadKey, before_ts: str) -> list[InboxMessage]:
        """The kept messages of a thread older than `before_ts`, oldest first (Slack timestamps
        are fixed-width, so as text they sort in time order)."""
        rows = await self.connector.all("notes_before", {**thread_params(thread), "before_ts": before_ts})
        return [InboxMessage(thread, ts, user, text) for ts, user, text in rows]

    async def drop_notes(self, thread: ThreadKey, message_ts: list[str]) -> None:
        """Forget kept messages once a turn has handed them to Claude."""
        key = thread_params(thread)
        await self.connector.execute_many("drop_note", [{**key, "message_ts": ts} for ts in message_ts])

    async def idle_threads(self, older_than_seconds: float, limit: int = 100) -> list[ThreadKey]:
        """Threads untouched that long that still keep a container, history or participants."""
        rows = await self.connector.all(
            "idle_threads",
            {"seconds": older_than_seconds, "cutoff": time.time() - older_than_seconds, "limit": limit},
        )
        return [ThreadKey(*row) for row in rows]

    async def forget(self, thread: ThreadKey) -> None:
        """Retention: drop a thread's container, history and who said what (the thread stays known)."""
        key = thread_params(thread)
        async with self.connector.transaction() as db:
            for query in FORGOTTEN_BY_RETENTION:
                await db.execute(query, key)

    async def active_threads(self, team_id: str, channel_id: str, user_id: str, limit: int = 10) -> list[ThreadSummary]:
        """A person's threads in one channel, the most recently active first (the `/reset` picker)."""
        rows = await self.connector.all(
            "active_threads", {"team": team_id, "channel": channel_id, "user": user_id, "limit": limit}
        )
        return [
            ThreadSummary(ThreadKey(team_id, channel_id, ts), text or "", float(updated)) for ts, updated, text in rows
        ]

    async def person_threads(self, team_id: str, user_id: str, limit: int = 100) -> list[PersonThread]:
        """The threads a person talked to the bot in (until retention forgets who said what),
        the most recently active first, each with everything its turns used."""
        rows = await self.connector.all("person_threads", {"team": team_id, "user": user_id, "limit": limit})
        return [
            PersonThread(
                ThreadKey(team_id, row[0], row[1]), row[2] or "", float(row[3]), Usage(*(int(v) for v in row[4:]))
            )
            for row in rows
        ]
