"""One contract for every store: each test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from storage import (
    Enqueued,
    Feedback,
    InboxMessage,
    Lease,
    LeaseLost,
    QueueItem,
    ResetRequest,
    Store,
    ThreadKey,
    TurnLimits,
    Usage,
    open_store,
    store_for_url,
)

THREAD = ThreadKey("T1", "C1", "1700000001.000100")
OTHER = ThreadKey("T1", "C1", "1700000002.000100")
LEASE = 30.0
NO_LIMITS = TurnLimits()


def message(ts: str, thread: ThreadKey = THREAD, user: str = "U1", text: str = "hi") -> InboxMessage:
    return InboxMessage(thread, ts, user, text, [{"id": "F1", "name": "a.csv"}])


class Claimer:
    """Claims threads as one process does, keeping each claim's lease for what it does next."""

    def __init__(self, store: Store, owner: str, seconds: float) -> None:
        self.store, self.owner, self.seconds = store, owner, seconds
        self.leases: dict[ThreadKey, Lease] = {}

    async def claim(self, limits: TurnLimits = NO_LIMITS) -> ThreadKey | None:
        claimed = await self.store.claim_thread(self.owner, self.seconds, limits)
        if claimed is None:
            return None
        self.leases[claimed.thread] = claimed.lease
        return claimed.thread

    def lease(self, thread: ThreadKey) -> Lease:
        return self.leases.get(thread, Lease(self.owner, 0))

    async def next_item(self, thread: ThreadKey) -> QueueItem | None:
        return await self.store.next_item(thread, self.lease(thread), self.seconds)

    async def release(self, thread: ThreadKey) -> bool:
        return await self.store.release_thread(thread, self.lease(thread))


_claimers: weakref.WeakKeyDictionary[Store, dict[str, Claimer]] = weakref.WeakKeyDictionary()


def claimer(store: Store, owner: str, seconds: float = LEASE) -> Claimer:
    """The process named `owner` on this store (the same one each time it is named)."""
    named = _claimers.setdefault(store, {})
    if owner not in named:
        named[owner] = Claimer(store, owner, seconds)
    named[owner].seconds = seconds
    return named[owner]


async def ask(store: Store, asked: InboxMessage) -> Enqueued | None:
    """A message addressed to the bot, its thread made the bot's (as its turn does)."""
    queued = await store.enqueue_message(asked, addressed=True)
    await store.open_conversation(asked.thread)
    return queued


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    opened = await open_store(database_url)
    yield opened
    await opened.close()


async def test_a_message_is_queued_once_and_the_second_waits(store: Store) -> None:
    first = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert first is not None and not first.waits
    assert await store.enqueue_message(message("1700000001.000100"), addressed=True) is None
    second = await store.enqueue_message(message("1700000001.000200"), addressed=False)
    assert second is not None and second.waits and second.id > first.id
    assert await store.has_conversation(THREAD)
    assert not await store.has_conversation(OTHER)


async def test_one_lease_per_thread_and_items_in_order(store: Store) -> None:
    await store.enqueue_message(message("1700000001.000100", text="A"), addressed=True)
    await store.enqueue_reset(ResetRequest(THREAD, "U2", "https://hooks.example/r", True))
    await store.enqueue_message(message("1700000001.000300", text="B"), addressed=False)

    assert await claimer(store, "p1", LEASE).claim() == THREAD
    assert await claimer(store, "p2", LEASE).claim() is None  # held by p1

    first = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert first is not None and (first.kind, first.text, first.files) == ("message", "A", [{"id": "F1", "name": "a.csv"}])
    assert first.attempts == 1
    assert await store.item_state(first.id) == "running"
    # The head stays the head until it is finished: a second look is the same item, now retried.
    again = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert again is not None and again.id == first.id and again.attempts == 2
    await store.finish_item(first.id)

    reset = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert reset is not None and reset.kind == "reset"
    assert (reset.user_id, reset.response_url, reset.replace_original) == ("U2", "https://hooks.example/r", True)
    await store.finish_item(reset.id)
    last = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert last is not None and last.text == "B"
    assert not await claimer(store, "p1").release(THREAD)  # B is still open: the lease is kept
    await store.finish_item(last.id)
    assert await claimer(store, "p1", LEASE).next_item(THREAD) is None
    assert await claimer(store, "p1").release(THREAD)
    with pytest.raises(LeaseLost):
        await claimer(store, "p1", LEASE).next_item(THREAD)


async def test_an_expired_lease_is_taken_over_and_the_item_shows_it_was_interrupted(store: Store) -> None:
    item = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert item is not None
    assert await claimer(store, "dead", 0.2).claim() == THREAD
    running = await claimer(store, "dead", 0.2).next_item(THREAD)
    assert running is not None
    await store.set_reply_ts(running.id, "1700000001.000555")
    assert await claimer(store, "alive", LEASE).claim() is None
    expiry = await store.next_lease_expiry("alive")
    assert expiry is not None and expiry <= 0.2
    await asyncio.sleep(0.4)
    assert await store.renew_leases(claimer(store, "dead").leases, LEASE) == set()  # too late to renew
    assert await claimer(store, "alive", LEASE).claim() == THREAD
    taken = await claimer(store, "alive", LEASE).next_item(THREAD)
    assert taken is not None and taken.id == running.id
    assert taken.reply_ts == "1700000001.000555" and taken.attempts == 2
    with pytest.raises(LeaseLost):
        await claimer(store, "dead", LEASE).next_item(THREAD)
    assert await store.renew_leases(claimer(store, "alive").leases, LEASE) == {THREAD}


async def test_only_the_leases_a_process_still_works_on_are_renewed(store: Store) -> None:
    """A thread a process stopped working on (it could not let go: the database was away) must
    be free once its lease ends, however long the process goes on renewing the others."""
    await store.enqueue_message(message("1700000001.000100"), addressed=True)
    await store.enqueue_message(message("1700000002.000100", thread=OTHER), addressed=True)
    working = claimer(store, "p1", 0.3)
    assert {await working.claim(), await working.claim()} == {THREAD, OTHER}
    kept = {THREAD: working.lease(THREAD)}
    for _ in range(3):
        await asyncio.sleep(0.15)
        assert await store.renew_leases(kept, 0.3) == {THREAD}
    assert await claimer(store, "p2", LEASE).claim() == OTHER  # its lease ran out meanwhile
    stale = {OTHER: working.lease(OTHER)}
    assert await store.renew_leases(stale, LEASE) == set()  # nor can it be renewed again


async def test_hand_back_frees_the_thread_at_once(store: Store) -> None:
    await store.enqueue_message(message("1700000001.000100"), addressed=True)
    await store.enqueue_message(message("1700000002.000100", thread=OTHER), addressed=True)
    assert await claimer(store, "p1", LEASE).claim() == THREAD
    assert await claimer(store, "p1", LEASE).claim() == OTHER
    item = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert item is not None
    assert await store.hand_back("p1") == 2
    assert await store.item_state(item.id) == "pending"
    assert await claimer(store, "p2", LEASE).claim() == THREAD
    # A graceful hand-back is no interruption: deploys never use up a message's attempts.
    again = await claimer(store, "p2", LEASE).next_item(THREAD)
    assert again is not None and again.id == item.id and again.attempts == 1


async def test_queued_mark_only_while_pending(store: Store) -> None:
    item = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert item is not None
    assert await store.mark_queued(item.id)
    await claimer(store, "p1", LEASE).claim()
    head = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert head is not None and head.marked_queued
    assert not await store.mark_queued(item.id)


async def test_a_saved_turn_keeps_history_container_and_owed_files(store: Store) -> None:
    item = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert item is not None
    turn = [
        {"role": "user", "content": [{"type": "text", "text": "hi ü"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
    ]
    await store.save_turn(item.id, THREAD, turn, "cntr_1", 1900000000.5, ["file_a", "file_b"], [("a.csv", 12)])
    conversation = await store.load_conversation(THREAD)
    assert conversation.history == turn
    assert (conversation.container_id, conversation.container_expires_at) == ("cntr_1", 1900000000.5)
    await claimer(store, "p1", LEASE).claim()
    head = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert head is not None and head.answered and head.user_files == [("a.csv", 12)]

    owed = await store.pending_deliveries(item.id)
    assert [d.file_id for d in owed] == ["file_a", "file_b"]
    await store.delivery_started(item.id, 0, "F0001")
    await store.delivery_done(item.id, 0)
    await store.delivery_started(item.id, 1, "F0002")
    [left] = await store.pending_deliveries(item.id)
    assert (left.file_id, left.slack_file_id) == ("file_b", "F0002")

    # A turn may store the earlier history anew (a file the Files API lost, left out of it).
    second = await store.enqueue_message(message("1700000001.000200"), addressed=False)
    assert second is not None
    earlier = [{**turn[0], "content": [{"type": "text", "text": "hi, the file is gone"}]}, turn[1]]
    latest = [{"role": "user", "content": [{"type": "text", "text": "more"}]},
              {"role": "assistant", "content": [{"type": "text", "text": "sure"}]}]
    await store.save_turn(second.id, THREAD, latest, "cntr_1", 1900000001.0, [], [], earlier_history=earlier)
    assert (await store.load_conversation(THREAD)).history == [*earlier, *latest]

    assert await store.reset(THREAD)
    emptied = await store.load_conversation(THREAD)
    assert (emptied.history, emptied.container_id) == ([], None)
    assert not await store.reset(OTHER)


async def test_the_reset_picker_lists_threads_from_participants(store: Store) -> None:
    await store.enqueue_message(message("1700000001.000100", text="first"), addressed=True)
    await store.enqueue_message(message("1700000002.000100", thread=OTHER, user="U2"), addressed=True)
    await store.open_conversation(THREAD)  # as each message's turn does, its person let in
    await store.open_conversation(OTHER)
    [mine] = await store.active_threads("T1", "C1", "U1")
    assert (mine.thread, mine.last_text) == (THREAD, "first")
    assert [s.thread for s in await store.active_threads("T1", "C1", "U2")] == [OTHER]


async def test_pruning_forgets_old_answered_rows_even_of_busy_threads(store: Store) -> None:
    old = await ask(store, message("1700000001.000100"))
    assert old is not None
    await claimer(store, "p1", LEASE).claim()
    await claimer(store, "p1", LEASE).next_item(THREAD)
    await store.finish_item(old.id)
    assert await store.prune(older_than_seconds=3600) == 0  # recent: a retry is still recognised
    assert await ask(store, message("1700000001.000100")) is None
    waiting = await store.enqueue_message(message("1700000001.000200"), addressed=False)
    assert waiting is not None
    await asyncio.sleep(0.05)
    assert await store.prune(older_than_seconds=0.01) == 1  # a thread used every day is pruned too
    assert await store.item_state(waiting.id) == "pending"  # never what is still to do
    await store.finish_item(waiting.id)
    await asyncio.sleep(0.05)
    assert await store.prune(older_than_seconds=0.01) == 1
    assert await store.has_conversation(THREAD)  # pruning forgets queue rows, never the thread


async def test_several_processes_migrating_a_new_database_at_once(database_url: str) -> None:
    stores = [store_for_url(database_url) for _ in range(8)]
    await asyncio.gather(*(s.open() for s in stores))
    versions = {await s.schema_version() for s in stores}
    await asyncio.gather(*(s.close() for s in stores))
    assert len(versions) == 1 and versions.pop() >= 1


async def test_the_health_check_writes(store: Store) -> None:
    await store.check_writable()
    await store.check_writable()


async def test_idle_threads_are_found_and_forgotten(store: Store) -> None:
    item = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert item is not None
    turn = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    await store.save_turn(item.id, THREAD, turn, "cntr_1", None, [], [])
    assert await store.idle_threads(older_than_seconds=3600) == []
    await asyncio.sleep(0.05)
    assert await store.idle_threads(older_than_seconds=0.01) == []  # its turn is still open: not idle
    await store.finish_item(item.id)
    assert await store.idle_threads(older_than_seconds=0.01) == [THREAD]
    await store.forget(THREAD)
    assert await store.idle_threads(older_than_seconds=0.01) == []
    forgotten = await store.load_conversation(THREAD)
    assert (forgotten.history, forgotten.container_id) == ([], None)
    assert await store.active_threads("T1", "C1", "U1") == []
    assert await store.has_conversation(THREAD)


async def test_notes_are_kept_in_order_until_dropped(store: Store) -> None:
    for ts, text in (("1700000001.000300", "third"), ("1700000001.000200", "second"), ("1700000009.000100", "later")):
        await store.add_note(InboxMessage(THREAD, ts, "U2", text))
    notes = await store.notes_before(THREAD, "1700000001.000400")
    assert [n.text for n in notes] == ["second", "third"]
    await store.drop_notes(THREAD, [n.message_ts for n in notes])
    assert [n.text for n in await store.notes_before(THREAD, "1700000099.000000")] == ["later"]


async def test_waiting_items_are_counted_across_threads_until_they_start(store: Store) -> None:
    assert await store.count_waiting() == 0
    await store.enqueue_message(message("1700000001.000100"), addressed=True)
    await store.enqueue_message(message("1700000001.000200"), addressed=False)
    await store.enqueue_reset(ResetRequest(OTHER, "U2"))
    assert await store.count_waiting() == 3
    assert await claimer(store, "p1", LEASE).claim() is not None
    item = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert item is not None and await store.count_waiting() == 2  # running is no longer waiting
    await store.finish_item(item.id)
    assert await store.count_waiting() == 2


async def test_usage_is_booked_per_thread_and_per_person_and_survives_a_reset(store: Store) -> None:
    assert await store.thread_usage(THREAD) == Usage()
    await store.record_usage(THREAD, "U1", "claude-sonnet-5-5", Usage(10, 2000, 0, 300, 1))
    await store.record_usage(THREAD, "U2", "claude-sonnet-5-5", Usage(5, 400, 2000, 120, 0))
    await store.record_usage(OTHER, "U1", "claude-sonnet-5-5", Usage(7, 0, 0, 50, 2))
    await store.reset(THREAD)
    assert await store.thread_usage(THREAD) == Usage(15, 2400, 2000, 420, 1, turns=2)
    assert await store.user_usage("T1", "U1") == Usage(17, 2000, 0, 350, 3, turns=2)
    assert await store.user_usage("T1", "U1", since=time.time() + 60) == Usage()
    assert await store.user_usage("T2", "U1") == Usage()


async def test_a_stop_request_marks_only_the_running_turn_and_twins_count_once(store: Store) -> None:
    await store.enqueue_message(message("1700000001.000100"), addressed=True)
    await store.enqueue_message(message("1700000001.000200"), addressed=False)
    assert await store.request_stop(THREAD, "U2", message_ts="1700000001.000900") == "idle"  # nothing runs yet
    assert await store.request_stop(THREAD, "U2", message_ts="1700000001.000900") == "duplicate"

    assert await claimer(store, "p1", LEASE).claim() == THREAD
    running = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert running is not None and running.stop_requested_by is None
    assert await store.request_stop(THREAD, "U3", item_id=running.id + 1) == "idle"  # a button of another turn
    assert await store.stop_requests([running.id, running.id + 1]) == {}
    assert await store.request_stop(THREAD, "U3", message_ts="1700000001.000950") == "stopping"
    assert await store.request_stop(THREAD, "U4", item_id=running.id) == "stopping"
    assert await store.stop_requests([running.id, running.id + 1]) == {running.id: "U3"}  # the first who asked
    assert await store.request_stop(OTHER, "U3") == "idle"

    # A retry of the stopped turn (its process died) knows it was stopped; the next item does not.
    again = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert again is not None and again.id == running.id and again.stop_requested_by == "U3"
    await store.finish_item(running.id)
    following = await claimer(store, "p1", LEASE).next_item(THREAD)
    assert following is not None and following.stop_requested_by is None
    assert await store.stop_requests([]) == {}


async def test_caps_admit_turns_per_person_and_overall_and_hold_back_the_rest(store: Store) -> None:
    threads = [ThreadKey("T1", "C1", f"1700000010.00{i}100") for i in range(4)]
    for i, thread in enumerate(threads):
        await store.enqueue_message(message(thread.thread_ts, thread, user="U1" if i < 3 else "U2"), addressed=True)
    limits = TurnLimits(per_person=2, overall=3)

    # A claimed thread's first turn counts at once, before it starts: U1's third is passed over.
    assert await claimer(store, "p1", LEASE).claim(limits) == threads[0]
    assert await claimer(store, "p2", LEASE).claim(limits) == threads[1]
    assert await store.running_turns("T1", "U1") == (2, 2)
    assert [m.message_ts for m in await store.held_back(limits)] == [threads[2].thread_ts]
    assert await claimer(store, "p2", LEASE).claim(limits) == threads[3]
    assert await store.running_turns("T1", "U2") == (1, 3)
    for thread, owner in ((threads[0], "p1"), (threads[1], "p2")):
        item = await claimer(store, owner, LEASE).next_item(thread)
        assert item is not None and item.admitted and await store.admit(item, limits)

    # A turn that was not counted when claimed is refused when the caps are full, and waits.
    assert await claimer(store, "p3", LEASE).claim(TurnLimits()) == threads[2]
    late = await claimer(store, "p3", LEASE).next_item(threads[2])
    assert late is not None and not late.admitted and not await store.admit(late, limits)
    assert await store.item_state(late.id) == "pending"
    assert await claimer(store, "p3", LEASE).claim(limits) is None

    # Room again once a turn ends; the refused attempt does not count as one.
    first = await claimer(store, "p1", LEASE).next_item(threads[0])
    assert first is not None
    await store.finish_item(first.id)
    assert await claimer(store, "p3", LEASE).claim(limits) == threads[2]
    again = await claimer(store, "p3", LEASE).next_item(threads[2])
    assert again is not None and again.attempts == 1
    assert await store.admit(again, limits)
    assert await store.running_turns("T1", "U1") == (2, 3)
    assert await store.held_back(limits) == []

    # Handing work back stops it counting.
    await store.hand_back("p3")
    assert await store.running_turns("T1", "U1") == (1, 2)


async def test_a_persons_threads_come_most_recent_first_with_what_each_thread_used(store: Store) -> None:
    dm = ThreadKey("T1", "D1", "")
    elsewhere = ThreadKey("T2", "C1", "1700000003.000100")
    first = await ask(store, message("1700000001.000100", text="first thread"))
    assert first is not None
    await asyncio.sleep(0.02)
    await ask(store, message("1700000002.000100", thread=OTHER, text="second"))
    await store.enqueue_message(message("1700000002.000200", thread=OTHER, user="U2", text="theirs"), addressed=False)
    await asyncio.sleep(0.02)
    await ask(store, message("1700000004.000100", thread=dm, text="in a DM"))
    await ask(store, message("1700000003.000100", thread=elsewhere, text="other workspace"))
    await store.record_usage(THREAD, "U1", "m", Usage(10, 20, 30, 5, 1))
    await store.record_usage(THREAD, "U2", "m", Usage(1, 0, 0, 1, 0))
    await store.record_usage(elsewhere, "U1", "m", Usage(1000, 0, 0, 1000, 0))

    threads = await store.person_threads("T1", "U1")
    assert [t.thread for t in threads] == [dm, OTHER, THREAD]
    assert [t.last_text for t in threads] == ["in a DM", "second", "first thread"]
    assert threads[0].last_active >= threads[1].last_active >= threads[2].last_active > time.time() - 60
    assert threads[2].usage == Usage(11, 20, 30, 6, 1, turns=2)  # everyone's turns in the thread
    assert threads[0].usage == threads[1].usage == Usage()
    assert [t.thread for t in await store.person_threads("T1", "U2")] == [OTHER]

    # An answer in the oldest thread makes it the most recently active one.
    await asyncio.sleep(0.02)
    await store.save_turn(first.id, THREAD, [{"role": "user", "content": [{"type": "text", "text": "x"}]}], None, None, [], [])
    assert [t.thread for t in await store.person_threads("T1", "U1", limit=2)] == [THREAD, dm]
    await store.forget(OTHER)  # retention forgets who said what
    assert [t.thread for t in await store.person_threads("T1", "U1")] == [THREAD, dm]
    assert await store.person_threads("T1", "U9") == []


async def test_usage_is_summed_per_person_and_per_channel_since_a_time(store: Store) -> None:
    elsewhere = ThreadKey("T2", "C1", "1700000003.000100")
    in_c2 = ThreadKey("T1", "C2", "1700000005.000100")
    await store.record_usage(THREAD, "U1", "m", Usage(100, 0, 0, 10, 1))  # C1, before the cutoff
    await store.record_usage(elsewhere, "U1", "m", Usage(9999, 0, 0, 9999, 0))  # another workspace
    await asyncio.sleep(0.05)
    cutoff = time.time()
    await asyncio.sleep(0.05)
    await store.record_usage(OTHER, "U1", "m", Usage(1, 2, 3, 4, 0))  # C1
    await store.record_usage(OTHER, "U2", "m", Usage(10, 0, 0, 20, 2))  # C1
    await store.record_usage(in_c2, "U2", "m", Usage(5, 0, 0, 5, 0))  # C2

    assert await store.usage_by("T1", "person") == {
        "U1": Usage(101, 2, 3, 14, 1, turns=2), "U2": Usage(15, 0, 0, 25, 2, turns=2),
    }
    assert await store.usage_by("T1", "channel") == {
        "C1": Usage(111, 2, 3, 34, 3, turns=3), "C2": Usage(5, 0, 0, 5, 0, turns=1),
    }
    assert await store.usage_by("T1", "person", since=cutoff) == {
        "U1": Usage(1, 2, 3, 4, 0, turns=1), "U2": Usage(15, 0, 0, 25, 2, turns=2),
    }
    assert await store.usage_by("T1", "channel", since=cutoff) == {
        "C1": Usage(11, 2, 3, 24, 2, turns=2), "C2": Usage(5, 0, 0, 5, 0, turns=1),
    }
    assert await store.usage_by("T1", "person", since=time.time() + 60) == {}
    assert await store.usage_by("T3", "channel") == {}


async def test_work_cancelled_at_any_point_leaves_the_store_usable(store: Store) -> None:
    """Shutdown cancels whatever runs; the transaction it was in must not outlive it."""
    for ticks in range(12):
        task = asyncio.create_task(store.check_writable())
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.check_writable()
        assert await store.enqueue_message(message(f"1700000001.0{ticks:05d}"), addressed=True) is not None


async def test_a_lease_left_on_a_finished_thread_is_nothing_to_wait_for(store: Store) -> None:
    """A process that died between finishing its last item and letting go leaves its lease row:
    the others must not keep waking up for it."""
    item = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert item is not None
    assert await claimer(store, "dead", 0.2).claim() == THREAD
    assert await claimer(store, "dead", 0.2).next_item(THREAD) is not None
    await store.finish_item(item.id)
    await asyncio.sleep(0.4)
    assert await store.next_lease_expiry("alive") is None
    await store.enqueue_message(message("1700000001.000200"), addressed=False)
    assert await store.next_lease_expiry("alive") == 0.0  # open work behind an expired lease: look now


async def test_a_process_that_lost_its_lease_can_no_longer_write(store: Store) -> None:
    queued = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert queued is not None
    assert await claimer(store, "stale", 0.05).claim() == THREAD
    item = await claimer(store, "stale", 0.05).next_item(THREAD)
    assert item is not None and item.lease == claimer(store, "stale").lease(THREAD)
    await asyncio.sleep(0.1)  # its lease ran out; another process takes the thread over
    assert await claimer(store, "fresh", LEASE).claim() == THREAD
    turn = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    with pytest.raises(LeaseLost):
        await store.save_turn(item.id, THREAD, turn, "cntr_stale", None, ["file_1"], [], lease=claimer(store, "stale").lease(THREAD))
    with pytest.raises(LeaseLost):
        await store.finish_item(item.id, lease=claimer(store, "stale").lease(THREAD))
    assert (await store.load_conversation(THREAD)).history == []  # nothing of the stale turn
    assert await store.pending_deliveries(item.id) == [] and await store.item_state(item.id) == "running"
    again = await claimer(store, "fresh", LEASE).next_item(THREAD)
    assert again is not None and again.id == item.id and not again.answered
    await store.save_turn(again.id, THREAD, turn, "cntr_fresh", None, [], [], lease=claimer(store, "fresh").lease(THREAD))
    await store.finish_item(again.id, lease=claimer(store, "fresh").lease(THREAD))
    assert await store.item_state(item.id) == "done"


async def test_what_a_person_views_is_their_latest_view_and_can_be_forgotten(store: Store) -> None:
    assert await store.viewing("T1", "U1") is None
    await store.set_viewing("T1", "U1", ThreadKey("T1", "C9", ""))
    await store.set_viewing("T1", "U1", THREAD)
    await store.set_viewing("T1", "U2", OTHER)
    assert await store.viewing("T1", "U1") == THREAD
    assert await store.viewing("T2", "U1") is None  # another workspace's person
    assert await store.viewing("T1", "U1", since=time.time() + 60) is None  # too old
    await store.set_viewing("T1", "U1", None)
    assert await store.viewing("T1", "U1") is None
    assert await store.viewing("T1", "U2") == OTHER


async def test_feedback_is_one_rating_per_person_and_answer(store: Store) -> None:
    await store.record_feedback(Feedback(THREAD, "1700000001.000200", "U1", "good", "claude-x", item_id=7))
    await store.record_feedback(Feedback(THREAD, "1700000001.000200", "U2", "good", "claude-x", item_id=7))
    await store.record_feedback(Feedback(THREAD, "1700000001.000200", "U1", "bad", "claude-x", item_id=7))
    await store.record_feedback(Feedback(OTHER, "1700000002.000200", "U1", "bad", "claude-x"))
    assert await store.feedback_totals("T1") == {"good": 1, "bad": 2}
    assert await store.feedback_totals("T1", since=time.time() + 60) == {}
    assert await store.feedback_totals("T2") == {}


async def test_a_custom_skill_row_is_kept_by_name_and_replaced_by_a_new_version(store: Store) -> None:
    assert await store.custom_skill("tidy") is None
    await store.keep_custom_skill("tidy", "skill_1", "skver_1", "d1")
    await store.keep_custom_skill("tidy", "skill_1", "skver_2", "d2")
    assert await store.custom_skill("tidy") == ("skill_1", "skver_2", "d2")


async def test_web_use_is_booked_and_summed_with_the_tokens(store: Store) -> None:
    await store.record_usage(THREAD, "U1", "m", Usage(input_tokens=10, output_tokens=2, web_searches=2, web_fetches=1))
    await store.record_usage(THREAD, "U1", "m", Usage(input_tokens=5, web_fetches=3))
    spent = await store.thread_usage(THREAD)
    assert (spent.turns, spent.input_tokens, spent.web_searches, spent.web_fetches) == (2, 15, 2, 4)
    assert (await store.usage_by("T1", "person"))["U1"] == spent


async def test_a_thread_keeps_the_skills_it_was_first_answered_with_until_a_reset(store: Store) -> None:
    first = [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]
    turn = [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}]
    for n, skills in enumerate((first, [{"type": "anthropic", "skill_id": "pdf", "version": "latest"}])):
        item = await store.enqueue_message(message(f"1700000001.00010{n}"), addressed=n == 0)
        assert item is not None
        await store.save_turn(item.id, THREAD, turn, "cntr_1", None, [], [], skills=skills)
    assert (await store.load_conversation(THREAD)).skills == first
    assert (await store.load_conversation(OTHER)).skills is None
    await store.reset(THREAD)
    assert (await store.load_conversation(THREAD)).skills is None


async def test_reservations_count_only_turns_not_done(store: Store) -> None:
    first = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    other = await store.enqueue_message(message("1700000002.000100", thread=OTHER, user="U2"), addressed=True)
    assert first is not None and other is not None
    await store.reserve(first.id, "T1", "U1", 1000)
    await store.reserve(first.id, "T1", "U1", 1200)  # a continuation books anew
    await store.reserve(other.id, "T1", "U2", 300)
    assert await store.reserved_input("T1", "U1") == 1200
    assert await store.reserved_input("T1") == 1500
    assert await store.reserved_input("T1", excluding=first.id) == 300
    assert await store.reserved_input("T2") == 0
    await store.finish_item(other.id)  # a turn that ended (or crashed and was settled) reserves nothing
    assert await store.reserved_input("T1") == 1200
    await store.release_reservation(first.id)
    assert await store.reserved_input("T1") == 0


async def count_rows(database_url: str, table: str) -> int:
    """A table's rows, read behind the store's back."""
    if database_url.startswith("sqlite:"):
        with sqlite3.connect(database_url[len("sqlite:///") :]) as connection:
            return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(f"SELECT COUNT(*) FROM {table}"))
    finally:
        await connection.close()


async def test_pruning_bounds_claims_reservations_views_and_emptied_threads(store: Store, database_url: str) -> None:
    item = await ask(store, message("1700000001.000100"))
    assert item is not None
    assert await claimer(store, "p1", 0.01).claim() == THREAD  # a lease a dead process left
    await store.reserve(item.id, "T1", "U1", 100)
    await store.set_viewing("T1", "U1", OTHER)
    await store.finish_item(item.id)
    await asyncio.sleep(0.05)
    assert await count_rows(database_url, "claims") == 1
    await store.prune(older_than_seconds=0.01)
    assert await count_rows(database_url, "claims") == 0  # the row is gone, not only expired
    assert await store.reserved_input("T1") == 0 and await store.viewing("T1", "U1") is None
    assert await store.has_conversation(THREAD)  # known still, without a container or history

    await store.prune(older_than_seconds=0.01, known_for_seconds=0.01)
    assert not await store.has_conversation(THREAD)


async def test_an_attempt_cut_short_by_an_outage_is_given_back(store: Store) -> None:
    await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert await claimer(store, "p1").claim() == THREAD
    first = await claimer(store, "p1").next_item(THREAD)
    assert first is not None and first.attempts == 1
    await store.forgive_attempts({first.id})  # the database was away; the process did not die
    again = await claimer(store, "p1").next_item(THREAD)
    assert again is not None and again.attempts == 1
    await store.finish_item(again.id)
    await store.forgive_attempts({again.id})  # a finished item keeps its count
    assert await store.item_state(again.id) == "done"


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'one.db'}")
    yield opened
    await opened.close()


async def held_transaction(store: Store, release: asyncio.Event) -> asyncio.Task[None]:
    """A transaction that keeps SQLite's one connection until `release` is set."""
    holding = asyncio.Event()

    async def hold() -> None:
        async with store.connector.transaction() as db:
            await db.one("count_waiting")
            holding.set()
            await release.wait()

    task = asyncio.create_task(hold())
    await holding.wait()
    return task


async def test_on_sqlite_a_message_slack_waits_on_goes_before_the_work_queued_ahead_of_it(
    sqlite_store: Store,
) -> None:
    """One connection serves the whole process: an event's insert (its acknowledgement waits on
    it) must not queue behind a busy minute's claims, renewals and turn writes."""
    release = asyncio.Event()
    holder = await held_transaction(sqlite_store, release)
    done: list[str] = []
    claimed: list[ThreadKey] = []

    async def claim(n: int) -> None:
        got = await sqlite_store.claim_thread(f"p{n}", LEASE)
        claimed.extend([got.thread] if got else [])
        done.append("claim")

    async def enqueue() -> None:
        await sqlite_store.enqueue_message(message("1700000001.000100"), addressed=True)
        done.append("enqueue")

    claims = [asyncio.create_task(claim(n)) for n in range(3)]
    await asyncio.sleep(0.05)  # the claims wait for the connection first
    enqueued = asyncio.create_task(enqueue())
    await asyncio.sleep(0.05)
    assert done == []
    release.set()
    await asyncio.gather(holder, enqueued, *claims)
    assert done == ["enqueue", "claim", "claim", "claim"]
    assert claimed == [THREAD]  # the message was there for the first claim, queued before it


async def test_on_sqlite_a_caller_cancelled_as_it_is_handed_the_connection_passes_it_on(
    sqlite_store: Store,
) -> None:
    release = asyncio.Event()
    holder = await held_transaction(sqlite_store, release)
    first = asyncio.create_task(sqlite_store.enqueue_message(message("1700000001.000100"), addressed=True))
    second = asyncio.create_task(sqlite_store.enqueue_message(message("1700000001.000200"), addressed=True))
    await asyncio.sleep(0.05)
    release.set()
    await holder  # the connection is handed to `first` now, which has not run yet
    first.cancel()
    assert (await asyncio.gather(first, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    queued = await asyncio.wait_for(second, 5)
    assert queued is not None and not queued.waits  # the cancelled message was never stored
    await sqlite_store.check_writable()


async def test_a_channels_settings_are_replaced_whole_and_the_previous_ones_returned(store: Store) -> None:
    assert await store.keep_channel_settings("T1", "C1", {"model": "claude-opus-5-5"}, "U1") is None
    before = await store.keep_channel_settings("T1", "C1", {"effort": "low", "skills": ["pdf"]}, "U2")
    assert before is not None and before.values == {"model": "claude-opus-5-5"} and before.changed_by == "U1"
    await store.keep_channel_settings("T1", "dm", {"follow_ups": "mention"}, "U3")
    await store.keep_channel_settings("T2", "C1", {"web_search": True}, "U4")
    now = await store.channel_settings("T1", "C1")
    assert now is not None and now.values == {"effort": "low", "skills": ["pdf"]} and now.changed_by == "U2"
    assert abs(now.changed_at - time.time()) < 60
    assert set(await store.team_channel_settings("T1")) == {"C1", "dm"}  # never another workspace's
    last = await store.keep_channel_settings("T1", "C1", {}, "U2")  # nothing set: the row goes
    assert last is not None and await store.channel_settings("T1", "C1") is None


async def test_a_thread_with_an_active_schedule_is_not_idle_and_forgetting_it_drops_its_schedules(store: Store) -> None:
    item = await store.enqueue_message(message("1700000001.000100"), addressed=True)
    assert item is not None
    turn = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    await store.save_turn(item.id, THREAD, turn, "cntr_1", None, [], [])
    await store.finish_item(item.id)
    made = await store.create_schedule(THREAD, "U1", "report", "every", "3600", "UTC", time.time() + 3600)
    await asyncio.sleep(0.05)
    assert await store.idle_threads(older_than_seconds=0.01) == []  # it will run again
    assert await store.set_schedule_state(made.id, "paused")
    assert await store.idle_threads(older_than_seconds=0.01) == [THREAD]
    await store.forget(THREAD)
    assert await store.thread_schedules(THREAD) == [] and await store.schedule(made.id) is None
