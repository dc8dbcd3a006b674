"""The durable per-thread queue: items, the leases that give a thread to one process, the caps.

Written once over a `Connector`; the SQL of each query is in `queries/<dialect>.sql`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

from .connector import Connection, Connector
from .models import (
    Enqueued,
    InboxMessage,
    LeaseLost,
    QueueItem,
    ResetRequest,
    StopOutcome,
    ThreadKey,
    TurnLimits,
)

# Every process takes this advisory lock to admit a turn under the caps, so two processes
# never both take the last place.
ADMISSION_LOCK = 0x7468726561640002
NO_LIMITS = TurnLimits()


def thread_params(thread: ThreadKey) -> dict[str, Any]:
    """A thread's key as query parameters, with the time (SQLite keeps times as epoch seconds)."""
    return {"team": thread.team_id, "channel": thread.channel_id, "thread_ts": thread.thread_ts, "now": time.time()}


def cap_params(limits: TurnLimits) -> dict[str, Any]:
    return {"per_person": limits.per_person, "overall": limits.overall, "now": time.time()}


class QueueStore:
    """Everything a thread is asked, in order, and which process works on it."""

    connector: Connector

    async def enqueue_message(self, message: InboxMessage, *, starts_conversation: bool) -> Enqueued | None:
        """Store a message for answering (and the thread as the bot's when it starts one).

        None when the same Slack message was stored before (a retry, or the twin event).
        """
        key = thread_params(message.thread)
        async with self.connector.transaction() as db:
            row = await db.one(
                "enqueue_message",
                {**key, "message_ts": message.message_ts, "user": message.user_id, "text": message.text,
                 "files": json.dumps(message.files)},
            )
            if row is None:
                return None
            if starts_conversation:
                await db.execute("start_conversation", key)
            await db.execute("touch_participant", {**key, "user": message.user_id, "text": message.text})
            return await _queued(db, key, int(row[0]))

    async def enqueue_reset(self, request: ResetRequest) -> Enqueued:
        key = thread_params(request.thread)
        async with self.connector.transaction() as db:
            row = await db.one(
                "enqueue_reset",
                {**key, "user": request.user_id, "response_url": request.response_url,
                 "replace_original": request.replace_original},
            )
            assert row is not None
            return await _queued(db, key, int(row[0]))

    async def claim_thread(
        self, owner: str, lease_seconds: float, exclude: Collection[ThreadKey], limits: TurnLimits = NO_LIMITS
    ) -> ThreadKey | None:
        """Take the lease of the thread with the oldest open work that no live lease holds,
        passing over threads whose next turn `limits` holds back."""
        async with self.connector.transaction() as db:
            if limits.any:  # claims that count against the caps go one at a time
                await db.lock(ADMISSION_LOCK)
            candidates = await db.all(
                "claimable_threads", {**cap_params(limits), "owner": owner, "limit": len(exclude) + 5}
            )
            for team, channel, thread_ts, head in candidates:
                thread = ThreadKey(team, channel, thread_ts)
                if thread in exclude:
                    continue
                # The upsert is the claim: only the first of concurrent claimers finds it free.
                lease = {**thread_params(thread), "owner": owner, "seconds": lease_seconds}
                lease["until"] = lease["now"] + lease_seconds
                if await db.one("take_lease", lease) is None:
                    continue
                if limits.any:  # its head counts against the caps from now on
                    await db.execute("admit_head", {"item": head})
                return thread
        return None

    async def next_item(self, thread: ThreadKey, owner: str, lease_seconds: float) -> QueueItem | None:
        """The thread's oldest open item, now running; None when there is none.

        Raises `LeaseLost` when `owner` no longer holds the thread.
        """
        key = thread_params(thread)
        async with self.connector.transaction() as db:
            renewal = {**key, "owner": owner, "seconds": lease_seconds, "until": key["now"] + lease_seconds}
            if await db.one("renew_lease", renewal) is None:
                raise LeaseLost(str(thread))
            row = await db.one("head_item", key)
            if row is None:
                return None
            await db.execute("start_item", {"item": row["id"]})
        return QueueItem.from_row(thread, row, owner)

    async def admit(self, item_id: int, thread: ThreadKey, owner: str, limits: TurnLimits) -> bool:
        """Count a running turn against `limits`, one admission at a time across processes.

        False when a cap is full: the item is pending again and `owner` gives the thread up,
        so whichever process has room claims it once a turn ends.
        """
        async with self.connector.transaction() as db:
            await db.lock(ADMISSION_LOCK)
            fits = await db.one("item_fits", {**cap_params(limits), "item": item_id})
            if fits and fits[0]:
                await db.execute("admit_item", {"item": item_id})
                return True
            await db.execute("hold_back_item", {"item": item_id})
            await db.execute("drop_lease", {**thread_params(thread), "owner": owner})
        return False

    async def running_turns(self, team_id: str, user_id: str) -> tuple[int, int]:
        """Admitted turns running now: (the person's, everyone's)."""
        row = await self.connector.one("running_turns", {"team": team_id, "user": user_id, "now": time.time()})
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def held_back(self, limits: TurnLimits, limit: int = 20) -> list[InboxMessage]:
        """New turns at the head of a free thread that a full cap holds back, not yet marked queued."""
        rows = await self.connector.all("held_back", {**cap_params(limits), "limit": limit})
        return [
            InboxMessage(ThreadKey(team, channel, thread_ts), message_ts, user, text, id=item_id)
            for team, channel, thread_ts, message_ts, user, text, item_id in rows
        ]

    async def release_thread(self, thread: ThreadKey, owner: str) -> bool:
        """Give the lease up; False (lease kept) when work arrived in the meantime."""
        return await self.connector.execute("release_lease", {**thread_params(thread), "owner": owner}) == 1

    async def renew_leases(self, owner: str, lease_seconds: float) -> set[ThreadKey]:
        """Extend every lease `owner` holds; returns the threads it still holds."""
        now = time.time()
        rows = await self.connector.all(
            "renew_leases", {"owner": owner, "now": now, "seconds": lease_seconds, "until": now + lease_seconds}
        )
        return {ThreadKey(*row) for row in rows}

    async def hand_back(self, owner: str) -> int:
        """Shutdown: running items become pending again and `owner`'s leases end at once."""
        async with self.connector.transaction() as db:
            await db.execute("hand_back_items", {"owner": owner})
            released = await db.execute("drop_leases", {"owner": owner})
            await db.notify()
        return released

    async def live_processes(self) -> int:
        """How many processes hold a live lease now (they share Slack's rate budget)."""
        row = await self.connector.one("live_processes", {"now": time.time()})
        return int(row[0]) if row is not None else 0

    async def next_lease_expiry(self, owner: str) -> float | None:
        """Seconds until the first lease another process holds on a thread with open work runs
        out, if any (a lease left behind on a finished thread is nothing to wait for)."""
        row = await self.connector.one("next_lease_expiry", {"owner": owner, "now": time.time()})
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]))

    async def finish_item(self, item_id: int, owner: str | None = None) -> None:
        """Done; the other processes hear of it, as a turn waiting for room under a cap may now run.

        With `owner`, only while it holds the thread's lease: else `LeaseLost`, and nothing changes."""
        async with self.connector.transaction() as db:
            if await db.execute("finish_item", {"item": item_id, "now": time.time(), "owner": owner}) != 1 and owner:
                raise LeaseLost(f"item {item_id}")
            await db.notify()

    async def reply_thread(self, team_id: str, channel_id: str, reply_ts: str) -> tuple[ThreadKey, str] | None:
        """The thread whose running turn is writing the reply message `reply_ts`, and the person
        it answers; None when no turn is writing it."""
        row = await self.connector.one("reply_thread", {"team": team_id, "channel": channel_id, "reply_ts": reply_ts})
        return (ThreadKey(team_id, channel_id, str(row[0])), str(row[1])) if row is not None else None

    async def set_reply_ts(self, item_id: int, reply_ts: str | None) -> None:
        """The reply message a running turn is writing; None once it is finished."""
        await self.connector.execute("set_reply_ts", {"item": item_id, "reply_ts": reply_ts})

    async def request_stop(
        self, thread: ThreadKey, user_id: str, *, message_ts: str | None = None, item_id: int | None = None
    ) -> StopOutcome:
        """Ask the process running the thread's turn (`item_id`'s, if given) to stop it.

        `message_ts`: the Slack message that asked; its twin event is then a "duplicate".
        """
        key = thread_params(thread)
        async with self.connector.transaction() as db:
            if message_ts is not None and await db.one("note_stop_message", {**key, "message_ts": message_ts}) is None:
                return "duplicate"
            if await db.one("request_stop", {**key, "user": user_id, "item": item_id}) is None:
                return "idle"
            await db.notify()
        return "stopping"

    async def stop_requests(self, item_ids: Collection[int]) -> dict[int, str]:
        """Of these running items, those someone asked to stop, with who asked."""
        if not item_ids:
            return {}
        rows = await self.connector.all("stop_requests", {"items": json.dumps(list(item_ids))})
        return {int(item_id): str(user_id) for item_id, user_id in rows}

    async def mark_queued(self, item_id: int) -> bool:
        """Note that the item shows the "queued" reaction; False when it is no longer pending, or
        was marked already (by this process or another)."""
        return await self.connector.execute("mark_queued", {"item": item_id}) == 1

    async def item_state(self, item_id: int) -> str | None:
        row = await self.connector.one("item_state", {"item": item_id})
        return str(row[0]) if row else None

    async def count_waiting(self) -> int:
        """Items (of every process) not started yet: the queue depth the metrics report."""
        row = await self.connector.one("count_waiting")
        return int(row[0]) if row else 0

    async def prune(self, older_than_seconds: float, known_for_seconds: float | None = None) -> int:
        """Forget finished items, stop records, expired leases, lapsed reservations and views
        that old; with `known_for_seconds`, also the rows of threads emptied by retention and
        untouched that long (a follow-up there then needs a mention again). Returns the items."""
        age = {"seconds": older_than_seconds, "cutoff": time.time() - older_than_seconds}
        async with self.connector.transaction() as db:
            pruned = await db.execute("prune_items", age)
            for query in ("prune_stop_messages", "prune_leases", "prune_reservations", "prune_viewing"):
                await db.execute(query, age)
            if known_for_seconds is not None:
                await db.execute("prune_known_threads", {"known_cutoff": time.time() - known_for_seconds})
        return pruned


async def _queued(db: Connection, key: dict[str, Any], item_id: int) -> Enqueued:
    """Tell the other processes (at commit), and whether the item waits behind others."""
    await db.notify()
    waits = await db.one("item_waits", {**key, "item": item_id})
    return Enqueued(item_id, waits is not None)
