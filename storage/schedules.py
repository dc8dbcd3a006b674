"""Scheduled runs: one row per schedule, its next occurrence, and what became of the last run.

Firing an occurrence moves `next_at` on and queues the run in one transaction, and only the
transaction that found `next_at` still at that occurrence does so: each occurrence runs once,
however many processes look at once. Written once over a `Connector`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .connector import Connector, Row
from .models import Enqueued, InboxMessage, ThreadKey
from .queue import _queued, _store_message, thread_params


@dataclass(frozen=True)
class Schedule:
    id: int
    thread: ThreadKey
    user_id: str
    request: str
    kind: str
    spec: str
    tz: str
    next_at: float | None
    state: str
    """`active`, `paused`, `done` (a one-time run that ran) or `deleted`."""
    skipped: int = 0
    last_outcome: str | None = None
    last_run_at: float | None = None

    @classmethod
    def from_row(cls, row: Row) -> Schedule:
        (sid, team, channel, thread_ts, user, request, kind, spec, tz, next_at, state, skipped, outcome,
         last_run_at) = row
        return cls(int(sid), ThreadKey(team, channel, thread_ts), user, request, kind, spec, tz,
                   None if next_at is None else float(next_at), state, int(skipped), outcome,
                   None if last_run_at is None else float(last_run_at))


class ScheduleStore:
    connector: Connector

    async def create_schedule(
        self, thread: ThreadKey, user_id: str, request: str, kind: str, spec: str, tz: str, next_at: float
    ) -> Schedule:
        row = await self.connector.one("create_schedule", {
            **thread_params(thread), "user": user_id, "request": request, "kind": kind, "spec": spec, "tz": tz,
            "next_at": next_at, "created": time.time(),
        })
        assert row is not None
        return Schedule(int(row[0]), thread, user_id, request, kind, spec, tz, next_at, "active")

    async def schedule(self, schedule_id: int) -> Schedule | None:
        row = await self.connector.one("schedule", {"id": schedule_id})
        return Schedule.from_row(row) if row else None

    async def thread_schedules(self, thread: ThreadKey) -> list[Schedule]:
        return [Schedule.from_row(r) for r in await self.connector.all("thread_schedules", thread_params(thread))]

    async def person_schedules(self, team_id: str, user_id: str | None, limit: int = 50) -> list[Schedule]:
        """A person's active and paused schedules across threads (None: the workspace's)."""
        rows = await self.connector.all("person_schedules", {"team": team_id, "user": user_id, "limit": limit})
        return [Schedule.from_row(r) for r in rows]

    async def count_schedules_of(self, team_id: str, user_id: str) -> int:
        row = await self.connector.one("count_schedules_of", {"team": team_id, "user": user_id})
        return int(row[0]) if row else 0

    async def due_schedules(self, limit: int = 20) -> list[Schedule]:
        rows = await self.connector.all("due_schedules", {"now": time.time(), "limit": limit})
        return [Schedule.from_row(r) for r in rows]

    async def next_schedule_at(self) -> float | None:
        row = await self.connector.one("next_schedule_at")
        return float(row[0]) if row and row[0] is not None else None

    async def fire_schedule(self, schedule: Schedule, following: float | None, message_ts: str) -> Enqueued | None:
        """Queue the occurrence due at `schedule.next_at` as a message of its person, and move
        the schedule on to `following` (None: it is done); None when another process fired it."""
        async with self.connector.transaction() as db:
            moved = await db.execute("advance_schedule", {
                "id": schedule.id, "due": schedule.next_at, "following": following, "now": time.time(),
            })
            if moved != 1:
                return None
            run = InboxMessage(schedule.thread, message_ts, schedule.user_id, schedule.request)
            item_id = await _store_message(db, run, addressed=True, schedule_id=schedule.id)
            if item_id is None:
                return None
            return await _queued(db, schedule.thread, item_id, schedule.user_id)

    async def set_schedule_state(self, schedule_id: int, state: str, next_at: float | None = None) -> bool:
        """Pause, resume (from `next_at`) or delete; False when it was done or deleted already."""
        changed = await self.connector.execute(
            "set_schedule_state", {"id": schedule_id, "state": state, "next_at": next_at}
        )
        return changed == 1

    async def is_participant(self, thread: ThreadKey, user_id: str) -> bool:
        """Whether the person has written in the thread (who may manage its schedules)."""
        return await self.connector.one("is_participant", {**thread_params(thread), "user": user_id}) is not None

    async def note_schedule_outcome(self, schedule_id: int, outcome: str, *, skipped: bool) -> int:
        """What became of a run; the skipped runs in a row so far."""
        row = await self.connector.one(
            "note_schedule_outcome", {"id": schedule_id, "outcome": outcome, "skipped": skipped}
        )
        return int(row[0]) if row else 0
