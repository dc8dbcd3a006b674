"""Claims that scale, on a real PostgreSQL server: a thread's order is its arrival order, claimers
never give up while threads wait, caps take no global lock, leases start after the locks, and
notifications say what changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from storage import (
    InboxMessage,
    QueueNotice,
    Store,
    ThreadKey,
    TurnLimits,
    open_store,
)
from storage.connector import Connection, Connector
from storage.queue import ADMISSION_LOCK

LEASE = 30.0


def message(thread: ThreadKey, ts: str, user: str = "U1") -> InboxMessage:
    return InboxMessage(thread, ts, user, f"message {ts}")


class GatedCommits:
    """A connector whose transactions wait at their end until the gate opens: a process that
    was slow to commit (it lost the CPU, or the network)."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False, urgent: bool = False) -> AsyncIterator[Connection]:
        async with self.inner.transaction(readonly=readonly, urgent=urgent) as db:
            yield db
            self.waiting.set()
            await self.gate.wait()


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[list[Store]]:
    """Four processes' stores on one database."""
    opened = [await open_store(postgres_url) for _ in range(4)]
    yield opened
    for store in opened:
        await store.close()


async def test_a_thread_is_answered_in_arrival_order_though_its_first_message_commits_last(
    stores: list[Store],
) -> None:
    thread = ThreadKey("T1", "C1", "1700000100.000100")
    slow = GatedCommits(stores[0].connector)
    slow_store = Store(slow)  # type: ignore[arg-type]
    first = asyncio.create_task(slow_store.enqueue_message(message(thread, "1700000100.000100"), addressed=True))
    await asyncio.wait_for(slow.waiting.wait(), 5)  # numbered, not yet committed
    second = asyncio.create_task(stores[1].enqueue_message(message(thread, "1700000100.000200"), addressed=False))
    await asyncio.sleep(0.3)
    early = await stores[2].claim_thread("p2", LEASE)
    if early is not None:  # a claim may only ever see the thread's first message as its head
        head = await stores[2].next_item(thread, early.lease, LEASE)
        assert head is None or head.message_ts == "1700000100.000100"
        await stores[2].hand_back("p2")
    slow.gate.set()
    await asyncio.gather(first, second)
    claim = await stores[3].claim_thread("p3", LEASE)
    assert claim is not None
    order = []
    while (item := await stores[3].next_item(thread, claim.lease, LEASE)) is not None:
        order.append(item.message_ts)
        await stores[3].finish_item(item.id, claim.lease)
    assert order == ["1700000100.000100", "1700000100.000200"]


async def test_concurrent_claimers_each_get_a_thread_while_threads_wait(stores: list[Store]) -> None:
    threads = [ThreadKey("T1", "C1", f"1700000200.{i:06d}") for i in range(12)]
    for thread in threads:
        await stores[0].enqueue_message(message(thread, thread.thread_ts, user=f"U{thread.thread_ts[-2:]}"),
                                        addressed=True)
    for limits in (TurnLimits(), TurnLimits(per_person=3)):
        claims = await asyncio.gather(*(
            store.claim_thread(f"p{n}-{limits.any}", LEASE, limits) for n, store in enumerate(stores) for _ in range(2)
        ))
        taken = [claim.thread for claim in claims if claim is not None]
        assert len(taken) == 8 and len(set(taken)) == 8  # nobody gave up, nobody shared
        for store in stores:
            for n in range(len(stores)):
                await store.hand_back(f"p{n}-{limits.any}")


async def test_the_per_person_cap_takes_no_lock_shared_by_everyone(stores: list[Store], postgres_url: str) -> None:
    """A claim counted against the per-person cap never waits for another person's claims (nor for
    the lock of the overall cap, which is not set)."""
    thread = ThreadKey("T1", "C1", "1700000300.000100")
    await stores[0].enqueue_message(message(thread, thread.thread_ts, user="U2"), addressed=True)
    holder = await asyncpg.connect(postgres_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", ADMISSION_LOCK)
            claim = await asyncio.wait_for(stores[1].claim_thread("p1", LEASE, TurnLimits(per_person=3)), 3)
        assert claim is not None and claim.thread == thread
        assert await stores[1].running_turns("T1", "U2") == (1, 1)
    finally:
        await holder.close()


async def test_a_lease_runs_from_when_its_lock_was_granted(stores: list[Store], postgres_url: str) -> None:
    thread = ThreadKey("T1", "C1", "1700000400.000100")
    await stores[0].enqueue_message(message(thread, thread.thread_ts), addressed=True)
    holder = await asyncpg.connect(postgres_url)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT pg_advisory_xact_lock($1)", ADMISSION_LOCK)
        claiming = asyncio.create_task(stores[1].claim_thread("p1", 2.0, TurnLimits(overall=5)))
        await asyncio.sleep(1.5)  # the claim waits for the overall cap's lock
        assert not claiming.done()
        await holder.execute("COMMIT")
        assert (await claiming) is not None
    finally:
        await holder.close()
    left = await stores[2].next_lease_expiry("someone-else")
    assert left is not None and left > 1.5  # not 0.5: the wait came before the lease


async def test_notifications_say_what_changed(stores: list[Store]) -> None:
    heard: list[QueueNotice] = []
    await stores[1].listen(lambda payload: heard.append(QueueNotice.decode(payload)))
    heard.clear()  # the listener's own first look
    thread = ThreadKey("T1", "C1", "1700000500.000100")
    await stores[0].enqueue_message(message(thread, thread.thread_ts), addressed=True)
    claim = await stores[0].claim_thread("p0", LEASE)
    assert claim is not None
    item = await stores[0].next_item(thread, claim.lease, LEASE)
    assert item is not None
    assert await stores[0].request_stop(thread, "U1") == "stopping"
    await stores[0].finish_item(item.id, claim.lease)
    for _ in range(50):
        if len(heard) >= 3:
            break
        await asyncio.sleep(0.05)
    assert heard == [QueueNotice("queued", thread), QueueNotice("stop", thread, item.id), QueueNotice("room", thread)]
    assert QueueNotice.decode("") == QueueNotice("any") == QueueNotice.decode("not json")


async def test_a_pool_with_no_free_connection_fails_a_call_in_time(postgres_url: str) -> None:
    store = await open_store(postgres_url, pool_size=1, acquire_seconds=0.3)
    try:
        async with store.connector.transaction():
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(store.count_waiting(), 3)
        assert await store.count_waiting() == 0  # the connection is free again
    finally:
        await store.close()
