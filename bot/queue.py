"""The queue: one turn at a time per thread, in arrival order, across any number of processes.

Everything a thread is asked (messages and resets) is a row of that thread's queue in the
database, stored before Slack is acknowledged. A process takes a thread by claiming its lease,
works through the thread's items in order while renewing the lease, and lets go when the
thread is empty. A process that dies stops renewing; another takes the thread over once the
lease ends. Other processes are woken by the store (PostgreSQL `NOTIFY`) or by a slow poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from storage import (
    DATABASE_OUTAGES,
    Claim,
    Enqueued,
    InboxMessage,
    Lease,
    LeaseLost,
    QueueItem,
    QueueNotice,
    ResetRequest,
    StopOutcome,
    Store,
    ThreadKey,
    TurnLimits,
)

from .ops.logs import log_failure
from .outbound.waiting import WaitingSigns, remove_queued_reaction
from .tasks import stop_tasks
from .turn.context import StopSignal
from .turn.resets import Resets
from .turn.runner import TurnRunner
from .workspaces import WorkspaceResolver

logger = logging.getLogger(__name__)

# Leases are renewed every quarter lease, each renewal given at most an eighth of it.
RENEWAL_INTERVAL_SHARE = 0.25
RENEWAL_TIMEOUT_SHARE = 0.125
# After a database failure, wait this long before the dispatcher tries again.
RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class QueueSettings:
    lease_seconds: float
    poll_seconds: float
    max_turns: int
    """Turns this process runs at once."""
    limits: TurnLimits
    """Turns running at once per person and overall, over every process."""


def process_owner_id() -> str:
    """Names this process in the leases it holds: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class TurnQueue:
    """Claims threads, runs their items in order, and keeps its leases alive."""

    def __init__(
        self,
        *,
        store: Store,
        workspaces: WorkspaceResolver,
        runner: TurnRunner,
        resets: Resets,
        waiting: WaitingSigns,
        settings: QueueSettings,
        owner: str,
    ) -> None:
        self.store = store
        self.workspaces = workspaces
        self.runner = runner
        self.resets = resets
        self.waiting = waiting
        self.settings = settings
        self.owner = owner
        self._threads: dict[ThreadKey, asyncio.Task[None]] = {}
        self._leases: dict[ThreadKey, Lease] = {}
        """The lease of each thread worked on here: the ones renewed."""
        # The turns running here, by item id: what a stop request sets.
        self._stops: dict[int, StopSignal] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._wakeup = asyncio.Event()
        self._dispatching = False
        self._loops: list[asyncio.Task[None]] = []
        self._claimed_at: dict[ThreadKey, float] = {}
        """When each thread running here was claimed (`time.monotonic()`)."""
        self._closing = False
        """Shutting down: a thread's worker stops after the turn it runs."""
        self._last_renewal = time.monotonic()
        self._forgiven: set[int] = set()
        """Items whose attempt here ended with this process alive (the database away, the lease
        in doubt): given back, like a hand-back, once the database answers."""

    # --- entry points --------------------------------------------------------------------

    async def start(self) -> None:
        """Begin claiming work: whatever is queued already (a restart) is picked up at once."""
        await self.store.listen(self._heard)
        self._loops = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._keep_leases())]
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    def _heard(self, payload: str) -> None:
        """Another process changed the queue: look again only if it concerns this one."""
        notice = QueueNotice.decode(payload)
        if notice.kind == "stop":
            if notice.item_id in self._stops:
                self._spawn(self._honour_stops())
            return
        if notice.kind == "queued" and notice.thread in self._threads:
            return  # its worker here reads on until the thread is empty
        if notice.kind == "room" and not self.settings.limits.any:
            return  # nothing waits for room without caps
        if len(self._threads) >= self.settings.max_turns:
            return  # no room here: this process looks again when one of its turns ends
        self.wake()

    async def submit(self, message: InboxMessage, *, addressed: bool) -> bool:
        """Store a Slack message for an answer; False if it was stored before (retry/twin).
        `addressed`: a mention or DM, whose turn makes the thread the bot's."""
        queued = await self.store.enqueue_message(message, addressed=addressed)
        if queued is None:
            return False
        self.wake()
        if queued.waits:
            self._spawn(self.waiting.show_queued(queued.id, message))
        return True

    async def request_reset(self, request: ResetRequest) -> Enqueued:
        """Queue a reset behind whatever the thread was asked before it."""
        queued = await self.store.enqueue_reset(request)
        self.wake()
        return queued

    async def request_stop(
        self, thread: ThreadKey, user_id: str, *, message_ts: str | None = None, item_id: int | None = None
    ) -> StopOutcome:
        """Stop the thread's running turn, wherever it runs: here at once, elsewhere when that
        process is woken (PostgreSQL `NOTIFY`) or renews its leases."""
        outcome = await self.store.request_stop(thread, user_id, message_ts=message_ts, item_id=item_id)
        if outcome == "stopping":
            await self._honour_stops()
        return outcome

    @property
    def busy(self) -> bool:
        """Whether this process runs or is about to look for work."""
        return bool(self._threads) or self._wakeup.is_set() or self._dispatching

    async def drain(self) -> None:
        """Wait until this process has nothing running and nothing left to claim."""
        while self.busy or self._background:
            if self._threads:
                await asyncio.gather(*list(self._threads.values()), return_exceptions=True)
            else:
                await asyncio.sleep(0.01)

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop claiming, let running turns finish for a while, then hand the rest back at once.

        The leases are renewed until then: the grace period may be longer than a lease, and a
        thread another process took over meanwhile would be answered twice."""
        loops, self._loops = self._loops, []
        self._closing = True
        await stop_tasks(loops[:1])  # the dispatcher: nothing new is claimed
        running = list(self._threads.values())
        if running:
            _, still_running = await asyncio.wait(running, timeout=grace_seconds)
            if still_running:
                logger.warning("stopping with %d turn(s) running; another process takes them over", len(still_running))
            await stop_tasks(still_running)
        await stop_tasks(loops[1:])  # the lease renewer, once nothing runs
        await stop_tasks(self._background)
        try:
            await self.store.hand_back(self.owner)
        except Exception as error:  # noqa: BLE001 - the leases then simply run out
            log_failure("could not hand work back; it is taken over when the leases end", error, logger)

    # --- claiming ------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            self._dispatching = True
            self._wakeup.clear()
            try:
                await self._forgive_attempts()
                await self._claim_what_fits()
                await self._honour_stops()
                for held in await self.waiting.newly_held_back(self.settings.limits):
                    self._spawn(self.waiting.show_held_back(held, self.settings.limits))
                timeout = await self._next_look()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the database may come back: keep trying
                log_failure("could not claim work; retrying", error, logger)
                timeout = RETRY_SECONDS
            finally:
                self._dispatching = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the wake-up does, and shutdown would wait for this loop forever.
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def _claim_what_fits(self) -> None:
        while len(self._threads) < self.settings.max_turns:
            claim = await self.store.claim_thread(self.owner, self.settings.lease_seconds, self.settings.limits)
            if claim is None:
                return
            self._claimed_at[claim.thread] = time.monotonic()  # after the claim's commit
            self._leases[claim.thread] = claim.lease
            self._threads[claim.thread] = asyncio.create_task(self._work(claim))

    async def _next_look(self) -> float:
        """When to look again without a wake-up: as soon as another process's lease runs out."""
        expiry = await self.store.next_lease_expiry(self.owner)
        if expiry is None:
            return self.settings.poll_seconds
        return min(self.settings.poll_seconds, expiry + 0.05)

    async def _keep_leases(self) -> None:
        """Renew this process's leases; a turn whose lease is gone is stopped, never run twice.

        Each renewal may take at most `RENEWAL_TIMEOUT_SHARE` of the lease (a database that
        hangs is a failed renewal), and turns are stopped as soon as the next renewal could
        come too late: strictly before the lease can end, whenever failures happen."""
        lease = self.settings.lease_seconds
        interval, limit = lease * RENEWAL_INTERVAL_SHARE, lease * RENEWAL_TIMEOUT_SHARE
        while True:
            await asyncio.sleep(interval)
            asked = time.monotonic()
            try:
                async with asyncio.timeout(limit):
                    held = await self.store.renew_leases(dict(self._leases), lease)
                self._last_renewal = asked  # the lease runs from the statement, which came after
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a timeout too
                log_failure("could not renew leases", error, logger)
                if time.monotonic() + interval + limit < self._last_renewal + lease:
                    continue
                held = set()  # the leases may end before the next try: stop before another process starts
            for thread, task in list(self._threads.items()):
                # A claim committed after this renewal began may be missing from what it saw.
                if thread not in held and self._claimed_at.get(thread, asked) < asked:
                    logger.warning("lost the lease of %s; stopping its turn", thread)
                    task.cancel()
            try:
                await self._honour_stops()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - asked again at the next renewal
                log_failure("could not read stop requests", error, logger)

    async def _forgive_attempts(self) -> None:
        """Only interruptions by dying processes count towards a message's attempts."""
        if self._forgiven:
            forgiven, self._forgiven = self._forgiven, set()
            try:
                await self.store.forgive_attempts(forgiven)
            except Exception:
                self._forgiven |= forgiven
                raise

    async def _honour_stops(self) -> None:
        """Stop the turns running here that someone asked to stop."""
        if not self._stops:
            return
        for item_id, user_id in (await self.store.stop_requests(list(self._stops))).items():
            signal = self._stops.get(item_id)
            if signal is not None:
                signal.set(user_id)

    # --- one thread --------------------------------------------------------------------

    async def _work(self, claim: Claim) -> None:
        thread, lease = claim.thread, claim.lease
        item: QueueItem | None = None
        try:
            while not self._closing:
                item = None
                item = await self.store.next_item(thread, lease, self.settings.lease_seconds)
                if item is None:
                    if await self.store.release_thread(thread, lease):
                        return
                    continue
                if not await self._admitted(item):
                    return  # it waits for room; whichever process has room claims it then
                await self._run(item)
                await self.store.finish_item(item.id, lease)
                if self.settings.limits.any:
                    self.wake()  # room under the caps: a waiting thread may run now
        except LeaseLost:
            logger.warning("the lease of %s ended while it was worked on", thread)
            if item is not None:  # a lease ended under a live process: no death, no attempt
                self._forgiven.add(item.id)
        except asyncio.CancelledError:
            if item is not None and not self._closing:  # its lease was in doubt: no death, no attempt
                self._forgiven.add(item.id)
            raise
        except Exception as error:  # noqa: BLE001 - the item stays open: claimed again, up to MAX_ATTEMPTS
            log_failure(f"work on {thread} stopped", error, logger)
            if item is not None and isinstance(error.__cause__ or error, DATABASE_OUTAGES):
                self._forgiven.add(item.id)  # the database was away: the attempt does not count
            await self._let_go(claim)
        finally:
            del self._threads[thread]
            self._leases.pop(thread, None)  # no longer renewed: if it could not be let go, it runs out
            self._claimed_at.pop(thread, None)
            self.wake()  # room for another thread; and work may have arrived as this one let go

    async def _let_go(self, claim: Claim) -> None:
        """After a failure, free the thread at once for whichever process claims next (or, if
        the database is what failed, when the lease runs out)."""
        try:
            await self.store.drop_lease(claim.thread, claim.lease)
        except Exception:  # noqa: BLE001 - the lease then simply runs out
            logger.warning("could not let go of %s; it is free when its lease ends", claim.thread)

    async def _admitted(self, item: QueueItem) -> bool:
        """Whether a new turn fits under the caps (the thread's first was admitted as it was
        claimed, the ones after it are admitted here); resets and owed files always go ahead."""
        goes_ahead = item.admitted or item.kind != "message" or item.answered or item.stop_requested_by
        if goes_ahead or not self.settings.limits.any:
            return True
        return await self.store.admit(item, self.settings.limits)

    async def _run(self, item: QueueItem) -> None:
        workspace = await self.workspaces.resolve(item.thread.team_id)
        if workspace is None:
            logger.warning("no workspace for %s any more; its work is dropped", item.thread)
            return
        if item.marked_queued:
            await remove_queued_reaction(workspace, item.thread.channel_id, item.message_ts or "")
        if item.kind == "reset":
            await self.resets.reset_for(workspace, item)
            return
        stop = self._stops[item.id] = StopSignal()
        try:
            await self.runner.run(item, workspace, stop)
        finally:
            del self._stops[item.id]

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
