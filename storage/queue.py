"""The durable per-thread queue: items, the leases that give a thread to one process, the caps.

Written once over a `Connector`; the SQL of each query is in `queries/<dialect>.sql`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Mapping
from typing import Any

from .caps import BusyTurns, fits, person_lock, turns_running
from .connector import Connection, Connector
from .models import (
    Claim,
    Enqueued,
    InboxMessage,
    Lease,
    LeaseLost,
    QueueItem,
    QueueNotice,
    ResetRequest,
    StopOutcome,
    ThreadKey,
    TurnLimits,
)

# The overall cap is counted under this advisory lock (taken before any per-person lock), so
# two processes never both take its last place; each person's cap under a lock of their own.
ADMISSION_LOCK = 0x7468726561640002
NO_LIMITS = TurnLimits()
# Free threads one claim looks at, and how often it looks again when another claimer held
# the lock of a person it needed.
CLAIM_BATCH = 8
CLAIM_TRIES = 5


def thread_params(thread: ThreadKey) -> dict[str, Any]:
    """A thread's key as query parameters."""
    return {"team": thread.team_id, "channel": thread.channel_id, "thread_ts": thread.thread_ts}


class QueueStore:
    """Everything a thread is asked, in order, and which process works on it."""

    connector: Connector

    async def enqueue_message(self, message: InboxMessage, *, addressed: bool) -> Enqueued | None:
        """Store a message for answering; `addressed` (a mention, a DM): its turn makes the
        thread the bot's, if its person passes the policy then.

        None when the same Slack message was stored before (a retry, or the twin event).
        """
        key = thread_params(message.thread)
        async with self.connector.transaction(urgent=True) as db:
            item_id = await _store_message(db, message, addressed=addressed)
            if item_id is None:
                return None
            await db.execute("touch_participant", {**key, "user": message.user_id, "text": message.text})
            return await _queued(db, message.thread, item_id, message.user_id)

    async def enqueue_reset(self, request: ResetRequest) -> Enqueued:
        key = thread_params(request.thread)
        async with self.connector.transaction(urgent=True) as db:
            await db.execute("lock_thread", key)
            row = await db.one(
                "enqueue_reset",
                {**key, "user": request.user_id, "response_url": request.response_url,
                 "replace_original": request.replace_original},
            )
            assert row is not None
            return await _queued(db, request.thread, int(row[0]), request.user_id)

    async def claim_thread(self, owner: str, lease_seconds: float, limits: TurnLimits = NO_LIMITS) -> Claim | None:
        """Take the lease of the free thread with the oldest head, passing over threads whose
        next turn `limits` holds back.

        Claimers never wait on each other: a thread another process is claiming is skipped,
        and a claim that found every candidate taken looks again. Only the overall cap, when
        set, makes claims take one lock in turn."""
        for attempt in range(CLAIM_TRIES):
            async with self.connector.transaction() as db:
                claimed, contended = await self._claim_one(db, owner, lease_seconds, limits)
            if claimed is not None or not contended:
                return claimed
            await asyncio.sleep(0.005 * (attempt + 1))  # another claimer admits that person now
        return None

    async def _claim_one(
        self, db: Connection, owner: str, lease_seconds: float, limits: TurnLimits
    ) -> tuple[Claim | None, bool]:
        if limits.overall is not None:
            await db.lock(ADMISSION_LOCK)
        busy = await BusyTurns.read(db, limits)
        candidates = await db.all(
            "claimable_threads",
            {"full": busy.full(limits), "capped": json.dumps(busy.capped()), "limit": CLAIM_BATCH},
        )
        contended = False
        for team, channel, thread_ts in candidates:
            thread = ThreadKey(team, channel, thread_ts)
            free = await db.one("lock_claim", thread_params(thread))
            if free is None:  # another claimer is taking it, or took it
                contended = True
                continue
            head_user, counts = free
            admit = bool(counts) and limits.any
            if admit and limits.per_person is not None:
                if not await db.try_lock(person_lock(team, head_user)):
                    contended = True
                    continue
                if not await fits(db, team, head_user, limits):
                    continue
            lease = {**thread_params(thread), "owner": owner, "seconds": lease_seconds, "admit": admit}
            taken = await db.one("take_lease", lease)
            assert taken is not None  # the row is locked by this transaction
            return Claim(thread, Lease(owner, int(taken[0]))), False
        return None, contended

    async def next_item(self, thread: ThreadKey, lease: Lease, lease_seconds: float) -> QueueItem | None:
        """The thread's oldest open item, now running; None when there is none.

        Raises `LeaseLost` when `lease` no longer holds the thread.
        """
        key = thread_params(thread)
        async with self.connector.transaction() as db:
            renewed = await db.one("renew_lease", {**key, **lease.params(), "seconds": lease_seconds})
            if renewed is None:
                raise LeaseLost(str(thread))
            row = await db.one("head_item", key)
            if row is None:
                return None
            await db.execute("start_item", {"item": row["id"]})
        return QueueItem.from_row(thread, row, lease, admitted=renewed[0] is not None)

    async def admit(self, item: QueueItem, limits: TurnLimits) -> bool:
        """Count a running turn against `limits`, one admission at a time per person (and
        overall, when that cap is set) across processes.

        False when a cap is full: the item is pending again and its process gives the thread
        up, so whichever process has room claims it once a turn ends.
        """
        assert item.lease is not None
        key = {**thread_params(item.thread), **item.lease.params()}
        async with self.connector.transaction() as db:
            if limits.overall is not None:
                await db.lock(ADMISSION_LOCK)
            if limits.per_person is not None:
                await db.lock(person_lock(item.thread.team_id, item.user_id))
            if await db.execute("admit_turn", {**key, "user": None}) != 1:  # counted afresh, if at all
                raise LeaseLost(str(item.thread))
            if await fits(db, item.thread.team_id, item.user_id, limits):
                await db.execute("admit_turn", {**key, "user": item.user_id})
                return True
            await db.execute("hold_back_item", {"item": item.id})
            await db.execute("drop_lease", key)
        return False

    async def running_turns(self, team_id: str, user_id: str) -> tuple[int, int]:
        """Admitted turns running now: (the person's, everyone's)."""
        async with self.connector.transaction(readonly=True) as db:
            return await turns_running(db, team_id, user_id), await turns_running(db)

    async def held_back(self, limits: TurnLimits, limit: int = 20) -> list[InboxMessage]:
        """New turns at the head of a free thread that a full cap holds back, not yet marked
        queued. Costs nothing while nobody is at a cap."""
        async with self.connector.transaction(readonly=True) as db:
            busy = await BusyTurns.read(db, limits)
            if busy.full(limits):
                rows = await db.all("held_back_all", {"limit": limit})
            elif capped := busy.capped():
                rows = await db.all("held_back_of", {"people": json.dumps(capped), "limit": limit})
            else:
                return []
        return [
            InboxMessage(ThreadKey(team, channel, thread_ts), message_ts, user, text, id=item_id)
            for team, channel, thread_ts, message_ts, user, text, item_id in rows
        ]

    async def release_thread(self, thread: ThreadKey, lease: Lease) -> bool:
        """Give the lease up; False (lease kept) when work arrived in the meantime."""
        return await self.connector.execute("release_lease", {**thread_params(thread), **lease.params()}) == 1

    async def drop_lease(self, thread: ThreadKey, lease: Lease) -> None:
        """Give the lease up though work is left (its turn failed): any process may claim it."""
        await self.connector.execute("drop_lease", {**thread_params(thread), **lease.params()})

    async def renew_leases(self, leases: Mapping[ThreadKey, Lease], lease_seconds: float) -> set[ThreadKey]:
        """Extend the leases a process still works on; returns the threads it still holds.
        A lease it no longer names (its worker gave up) is left to run out."""
        if not leases:
            return set()
        held = json.dumps([{**thread_params(thread), **lease.params()} for thread, lease in leases.items()])
        rows = await self.connector.all("renew_leases", {"held": held, "seconds": lease_seconds})
        return {ThreadKey(*row) for row in rows}

    async def hand_back(self, owner: str) -> int:
        """Shutdown: running items become pending again and `owner`'s leases end at once."""
        async with self.connector.transaction() as db:
            await db.execute("hand_back_items", {"owner": owner})
            released = await db.execute("drop_leases", {"owner": owner})
            await db.notify(QueueNotice("any").encode())
        return released

    async def live_processes(self) -> int:
        """How many processes hold a live lease now (they share Slack's rate budget)."""
        row = await self.connector.one("live_processes")
        return int(row[0]) if row is not None else 0

    async def next_lease_expiry(self, owner: str) -> float | None:
        """Seconds until the first lease another process holds on a thread with open work runs
        out, if any (a lease left behind on a finished thread is nothing to wait for)."""
        row = await self.connector.one("next_lease_expiry", {"owner": owner})
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]))

    async def finish_item(self, item_id: int, lease: Lease | None = None) -> None:
        """Done: the thread's next item becomes its head, and the other processes hear that
        there is room (a turn waiting under a cap may now run).

        With `lease`, only while it holds the thread: else `LeaseLost`, and nothing changes."""
        async with self.connector.transaction() as db:
            row = await db.one("finish_item", {"item": item_id})
            if row is None:
                if lease is not None:
                    raise LeaseLost(f"item {item_id}")
                return
            thread = ThreadKey(*row)
            fence = lease.params() if lease is not None else {"owner": None, "generation": None}
            if await db.execute("advance_head", {**thread_params(thread), **fence}) != 1 and lease is not None:
                raise LeaseLost(str(thread))
            await db.notify(QueueNotice("room", thread).encode())

    async def reply_thread(self, team_id: str, channel_id: str, reply_ts: str) -> tuple[ThreadKey, str] | None:
        """The thread whose running turn is writing the reply message `reply_ts`, and the person
        it answers; None when no turn is writing it."""
        row = await self.connector.one("reply_thread", {"team": team_id, "channel": channel_id, "reply_ts": reply_ts})
        return (ThreadKey(team_id, channel_id, str(row[0])), str(row[1])) if row is not None else None

    async def note_upload(self, item_id: int, upload: dict[str, Any]) -> None:
        """A Files API copy of one of the item's files, made as soon as it exists: a later
        attempt uses it again, and housekeeping deletes it if no answer ever used it."""
        await self.connector.execute("note_upload", {"item": item_id, "upload": json.dumps(upload)})

    async def leftover_uploads(self, limit: int = 100) -> dict[int, list[str]]:
        """Files API copies of finished items that no stored answer took in: item -> file ids."""
        rows = await self.connector.all("leftover_uploads", {"limit": limit})
        return {int(item): [str(u["file_id"]) for u in json.loads(uploads)] for item, uploads in rows}

    async def clear_uploads(self, item_id: int) -> None:
        await self.connector.execute("clear_uploads", {"item": item_id})

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
        async with self.connector.transaction(urgent=True) as db:
            if message_ts is not None and await db.one("note_stop_message", {**key, "message_ts": message_ts}) is None:
                return "duplicate"
            stopping = await db.one("request_stop", {**key, "user": user_id, "item": item_id})
            if stopping is None:
                return "idle"
            await db.notify(QueueNotice("stop", thread, int(stopping[0])).encode())
        return "stopping"

    async def stop_requests(self, item_ids: Collection[int]) -> dict[int, str]:
        """Of these running items, those someone asked to stop, with who asked."""
        if not item_ids:
            return {}
        rows = await self.connector.all("stop_requests", {"items": json.dumps(list(item_ids))})
        return {int(item_id): str(user_id) for item_id, user_id in rows}

    async def forgive_attempts(self, item_ids: Collection[int]) -> None:
        """Give back one attempt of each open item (its attempt was cut short by an outage,
        not by a process that died)."""
        await self.connector.execute("forgive_attempts", {"items": json.dumps(list(item_ids))})

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
        now = time.time()
        age = {"seconds": older_than_seconds, "cutoff": now - older_than_seconds}
        async with self.connector.transaction() as db:
            pruned = await db.execute("prune_items", age)
            for query in ("prune_stop_messages", "prune_claims", "prune_reservations", "prune_viewing"):
                await db.execute(query, age)
            if known_for_seconds is not None:
                await db.execute("prune_known_threads", {"known_cutoff": now - known_for_seconds})
        return pruned


async def _store_message(
    db: Connection, message: InboxMessage, *, addressed: bool, schedule_id: int | None = None
) -> int | None:
    """Number a message in its thread, its claim row locked first (so a thread's items run in
    the order they arrived); None when the same message was stored before."""
    key = thread_params(message.thread)
    await db.execute("lock_thread", key)
    row = await db.one(
        "enqueue_message",
        {**key, "message_ts": message.message_ts, "user": message.user_id, "text": message.text,
         "files": json.dumps(message.files), "addressed": addressed, "schedule_id": schedule_id},
    )
    return int(row[0]) if row is not None else None


async def _queued(db: Connection, thread: ThreadKey, item_id: int, user_id: str) -> Enqueued:
    """The item is the thread's head unless it waits behind others; the other processes hear
    of it at commit."""
    key = thread_params(thread)
    heads = await db.execute("set_head", {**key, "item": item_id, "user": user_id})
    await db.notify(QueueNotice("queued", thread).encode())
    return Enqueued(item_id, waits=heads == 0)
