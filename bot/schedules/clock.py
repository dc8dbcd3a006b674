"""Fires due occurrences into the queue: a background task of every process. Each occurrence
is claimed in the database as it is queued (`fire_schedule`), so it runs once whichever
processes look; one missed while no process ran runs once, late, with a note saying so."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from storage import Schedule, Store

from ..ops.logs import log_failure
from ..outbound.notices import say
from ..threads import reply_thread_ts
from ..workspaces import WorkspaceResolver
from .when import Rule, local_time

logger = logging.getLogger(__name__)

LATE_SECONDS = 120.0
"""An occurrence fired later than this was missed (no process ran): the thread is told."""
LATE_NOTE = (
    ":alarm_clock: This scheduled run was due {due}, {late} ago, while threadbox was not running; it runs"
    " now, once (any other runs missed meanwhile are not run again)."
)


class Wakeable(Protocol):
    def wake(self) -> None: ...


def rule_of(schedule: Schedule) -> Rule:
    return Rule(schedule.kind, schedule.spec, schedule.tz, "")


class ScheduleClock:
    """Looks for due occurrences every `poll_seconds` (sooner when one is due, or when woken)."""

    def __init__(self, store: Store, workspaces: WorkspaceResolver, *, poll_seconds: float) -> None:
        self.store = store
        self.workspaces = workspaces
        self.poll_seconds = poll_seconds
        self.queue: Wakeable | None = None
        """The process's queue, woken when a run is queued (set once it exists)."""
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """A schedule was made or resumed: look again now."""
        self._woken.set()

    async def run(self) -> None:
        while True:
            self._woken.clear()
            try:
                for schedule in await self.store.due_schedules():
                    await self.fire(schedule)
                upcoming = await self.store.next_schedule_at()
                pause = self.poll_seconds if upcoming is None else min(self.poll_seconds, upcoming - time.time())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the database may come back: keep looking
                log_failure("could not fire scheduled runs", error, logger)
                pause = self.poll_seconds
            try:
                async with asyncio.timeout(max(0.05, pause)):
                    await self._woken.wait()
            except TimeoutError:
                pass

    async def fire(self, schedule: Schedule) -> bool:
        """Queue one due occurrence; False when another process did."""
        assert schedule.next_at is not None
        now = time.time()
        due = schedule.next_at
        following = rule_of(schedule).following(due, now)
        # One message per occurrence: a second queueing of the same one is refused as a duplicate.
        queued = await self.store.fire_schedule(schedule, following, f"schedule-{schedule.id}-{due:.6f}")
        if queued is None:
            return False
        if self.queue is not None:
            self.queue.wake()
        if now - due > LATE_SECONDS:
            workspace = await self.workspaces.resolve(schedule.thread.team_id)
            if workspace is not None:
                note = LATE_NOTE.format(due=local_time(due, schedule.tz), late=_duration(now - due))
                await say(workspace.client, schedule.thread.channel_id, reply_thread_ts(schedule.thread), note)
        return True


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} minutes"
    return f"{minutes // 60} hours {minutes % 60} minutes"
