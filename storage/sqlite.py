"""SQLite storage through aiosqlite: WAL mode, schema versioned by `PRAGMA user_version`.

One connection per process, statements taking turns under a lock. Several processes on one
host may share the file (leases work through it; they wake each other by polling only).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

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
from .store import LeaseLost, migrations

THREAD = "team_id = ? AND channel_id = ? AND thread_ts = ?"
OPEN_ITEMS = f"SELECT 1 FROM queue WHERE {THREAD} AND state != 'done'"
# Whether `q` is its thread's head: the oldest item not done.
IS_HEAD = (
    "q.id = (SELECT MIN(h.id) FROM queue h WHERE h.team_id = q.team_id AND h.channel_id = q.channel_id"
    " AND h.thread_ts = q.thread_ts AND h.state != 'done')"
)
# Turns that count against the caps: admitted, running, and their process alive.
BUSY = (
    "SELECT r.id, r.team_id, r.user_id FROM queue r JOIN leases rl ON rl.team_id = r.team_id"
    " AND rl.channel_id = r.channel_id AND rl.thread_ts = r.thread_ts"
    " WHERE r.state != 'done' AND r.admitted = 1 AND rl.lease_until >= :now"
)
# Whether a new turn of `q`'s person fits under the caps :per_person and :overall.
FITS = (
    "((:per_person IS NULL OR (SELECT COUNT(*) FROM busy b WHERE b.team_id = q.team_id AND b.user_id = q.user_id)"
    " < :per_person) AND (:overall IS NULL OR (SELECT COUNT(*) FROM busy) < :overall))"
)
USAGE_SUMS = (
    "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cache_creation_input_tokens), 0),"
    " COALESCE(SUM(cache_read_input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
    " COALESCE(SUM(code_runs), 0), COUNT(*) FROM usage"
)
# The same sums over `usage u` in a join or a GROUP BY (COUNT(u.id): no row counts no turn).
GROUPED_USAGE_SUMS = (
    "COALESCE(SUM(u.input_tokens), 0), COALESCE(SUM(u.cache_creation_input_tokens), 0),"
    " COALESCE(SUM(u.cache_read_input_tokens), 0), COALESCE(SUM(u.output_tokens), 0),"
    " COALESCE(SUM(u.code_runs), 0), COUNT(u.id)"
)
USAGE_GROUP_COLUMNS: dict[str, str] = {"person": "user_id", "channel": "channel_id"}


def sqlite_path(database_url: str) -> str:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` or `sqlite://:memory:` -> a path for sqlite3."""
    prefix = "sqlite://"
    if not database_url.startswith(prefix):
        raise ValueError(f"not a sqlite URL: {database_url!r}")
    rest = database_url[len(prefix) :]
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ValueError(f"sqlite URL needs three slashes (sqlite:///file.db): {database_url!r}")
    return rest[1:] or "threadbox.db"


def _key(thread: ThreadKey) -> tuple[str, str, str]:
    return (thread.team_id, thread.channel_id, thread.thread_ts)


class SQLiteStore:
    """Conversations, their history and the durable queue, in one SQLite file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        # One connection is shared by every coroutine: statements take turns, and a transaction
        # holds the lock throughout, so one coroutine's statements never land in another's.
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, database_url: str) -> SQLiteStore:
        return cls(sqlite_path(database_url))

    async def open(self) -> None:
        if self._path != ":memory:":
            await asyncio.to_thread(Path(self._path).parent.mkdir, parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        await self._db.execute("PRAGMA busy_timeout=10000")
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any failure, the COMMIT's own included, rolls back, so
        the connection is never left inside a transaction.

        A cancellation may land while BEGIN (or COMMIT) still waits in aiosqlite's thread, which
        runs statements in order: the ROLLBACK is queued behind it whatever happens here."""
        async with self._lock:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                await self.db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.OperationalError):  # no transaction was open
                    await asyncio.shield(self.db.execute("ROLLBACK"))
                raise

    async def _fetchone(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        async with self._lock, self.db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _fetchall(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]:
        async with self._lock, self.db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def schema_version(self) -> int:
        row = await self._fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        """Apply what is missing, inside one write transaction: processes starting together
        take turns, and the second finds the work done."""
        async with self._transaction() as db:
            async with db.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
            version = int(row[0]) if row else 0
            for number, script in migrations("sqlite"):
                if number > version:
                    for statement in _statements(script):
                        await db.execute(statement)
                    await db.execute(f"PRAGMA user_version = {number}")

    async def check_writable(self) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO health (id, checked_at) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                (time.time(),),
            )

    # --- the queue -------------------------------------------------------------------------

    async def enqueue_message(self, message: InboxMessage, *, starts_conversation: bool) -> Enqueued | None:
        key = _key(message.thread)
        now = time.time()
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO queue (team_id, channel_id, thread_ts, kind, message_ts, user_id,"
                " text, files, received_at) VALUES (?, ?, ?, 'message', ?, ?, ?, ?, ?)",
                (*key, message.message_ts, message.user_id, message.text, json.dumps(message.files), now),
            )
            if cursor.rowcount != 1:
                return None
            item_id = int(cursor.lastrowid or 0)
            if starts_conversation:
                await db.execute(
                    "INSERT OR IGNORE INTO conversations (team_id, channel_id, thread_ts, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?)",
                    (*key, now, now),
                )
            await db.execute(
                "INSERT INTO participants (team_id, channel_id, thread_ts, user_id, last_text, last_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (team_id, channel_id, thread_ts, user_id)"
                " DO UPDATE SET last_text = excluded.last_text, last_at = excluded.last_at",
                (*key, message.user_id, message.text, now),
            )
            return Enqueued(item_id, await self._waits(db, key, item_id))

    async def enqueue_reset(self, request: ResetRequest) -> Enqueued:
        key = _key(request.thread)
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO queue (team_id, channel_id, thread_ts, kind, user_id, response_url,"
                " replace_original, received_at) VALUES (?, ?, ?, 'reset', ?, ?, ?, ?)",
                (*key, request.user_id, request.response_url, int(request.replace_original), time.time()),
            )
            item_id = int(cursor.lastrowid or 0)
            return Enqueued(item_id, await self._waits(db, key, item_id))

    @staticmethod
    async def _waits(db: aiosqlite.Connection, key: tuple[str, str, str], item_id: int) -> bool:
        async with db.execute(f"{OPEN_ITEMS} AND id < ? LIMIT 1", (*key, item_id)) as cursor:
            return await cursor.fetchone() is not None

    async def claim_thread(
        self, owner: str, lease_seconds: float, exclude: Collection[ThreadKey], limits: TurnLimits = TurnLimits()
    ) -> ThreadKey | None:
        now = time.time()
        async with self._transaction() as db:
            # Each thread by its head item; a new turn whose person (or everyone) is at a cap waits.
            async with db.execute(
                f"WITH busy AS ({BUSY}) SELECT q.team_id, q.channel_id, q.thread_ts, q.id FROM queue q LEFT JOIN leases l"
                " ON l.team_id = q.team_id AND l.channel_id = q.channel_id AND l.thread_ts = q.thread_ts"
                " WHERE q.state != 'done' AND (l.owner IS NULL OR l.lease_until < :now OR l.owner = :owner)"
                f" AND {IS_HEAD} AND (q.kind != 'message' OR q.answered OR q.state = 'running' OR {FITS})"
                " ORDER BY q.id LIMIT :limit",
                {"now": now, "owner": owner, "limit": len(exclude) + 1,
                 "per_person": limits.per_person, "overall": limits.overall},
            ) as cursor:
                candidates = [(ThreadKey(team, channel, ts), head) for team, channel, ts, head in await cursor.fetchall()]
            for thread, head in candidates:
                if thread in exclude:
                    continue
                await db.execute(
                    "INSERT INTO leases (team_id, channel_id, thread_ts, owner, lease_until)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (team_id, channel_id, thread_ts) DO UPDATE"
                    " SET owner = excluded.owner, lease_until = excluded.lease_until",
                    (*_key(thread), owner, now + lease_seconds),
                )
                if limits.any:  # its head counts against the caps from now on
                    await db.execute(
                        "UPDATE queue SET admitted = 1 WHERE id = ? AND kind = 'message' AND NOT answered", (head,)
                    )
                return thread
        return None

    async def next_item(self, thread: ThreadKey, owner: str, lease_seconds: float) -> QueueItem | None:
        key = _key(thread)
        now = time.time()
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE leases SET lease_until = ? WHERE {THREAD} AND owner = ? AND lease_until >= ?",
                (now + lease_seconds, *key, owner, now),
            )
            if cursor.rowcount != 1:
                raise LeaseLost(str(thread))
            db.row_factory = aiosqlite.Row
            try:
                async with db.execute(
                    f"SELECT {QueueItem.QUERY_COLUMNS} FROM queue WHERE {THREAD} AND state != 'done'"
                    " ORDER BY id LIMIT 1",
                    key,
                ) as cursor:
                    row = await cursor.fetchone()
            finally:
                db.row_factory = None
            if row is None:
                return None
            await db.execute("UPDATE queue SET state = 'running', attempts = attempts + 1 WHERE id = ?", (row["id"],))
        return QueueItem.from_row(thread, row)

    async def admit(self, item_id: int, thread: ThreadKey, owner: str, limits: TurnLimits) -> bool:
        async with self._transaction() as db:
            async with db.execute(
                f"WITH busy AS ({BUSY} AND r.id != :item) SELECT {FITS} FROM queue q WHERE q.id = :item",
                {"item": item_id, "now": time.time(), "per_person": limits.per_person, "overall": limits.overall},
            ) as cursor:
                fits = await cursor.fetchone()
            if fits and fits[0]:
                await db.execute("UPDATE queue SET admitted = 1 WHERE id = ?", (item_id,))
                return True
            await db.execute(
                "UPDATE queue SET state = 'pending', admitted = 0, attempts = attempts - 1"
                " WHERE id = ? AND state = 'running'",
                (item_id,),
            )
            await db.execute(f"DELETE FROM leases WHERE {THREAD} AND owner = ?", (*_key(thread), owner))
        return False

    async def running_turns(self, team_id: str, user_id: str) -> tuple[int, int]:
        row = await self._fetchone(
            f"WITH busy AS ({BUSY}) SELECT COUNT(*) FILTER (WHERE team_id = :team AND user_id = :user),"
            " COUNT(*) FROM busy",
            {"now": time.time(), "team": team_id, "user": user_id},
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def held_back(self, limits: TurnLimits, limit: int = 20) -> list[InboxMessage]:
        rows = await self._fetchall(
            f"WITH busy AS ({BUSY}) SELECT q.team_id, q.channel_id, q.thread_ts, q.message_ts, q.user_id, q.text, q.id"
            " FROM queue q LEFT JOIN leases l ON l.team_id = q.team_id AND l.channel_id = q.channel_id"
            " AND l.thread_ts = q.thread_ts WHERE q.state = 'pending' AND q.kind = 'message' AND NOT q.answered"
            f" AND NOT q.marked_queued AND (l.owner IS NULL OR l.lease_until < :now) AND {IS_HEAD} AND NOT {FITS}"
            " ORDER BY q.id LIMIT :limit",
            {"now": time.time(), "per_person": limits.per_person, "overall": limits.overall, "limit": limit},
        )
        return [InboxMessage(ThreadKey(team, channel, thread_ts), message_ts, user, text, id=item_id)
                for team, channel, thread_ts, message_ts, user, text, item_id in rows]

    async def release_thread(self, thread: ThreadKey, owner: str) -> bool:
        key = _key(thread)
        async with self._transaction() as db:
            cursor = await db.execute(
                f"DELETE FROM leases WHERE {THREAD} AND owner = ? AND NOT EXISTS ({OPEN_ITEMS})",
                (*key, owner, *key),
            )
            return cursor.rowcount == 1

    async def renew_leases(self, owner: str, lease_seconds: float) -> set[ThreadKey]:
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "UPDATE leases SET lease_until = ? WHERE owner = ? AND lease_until >= ?",
                (now + lease_seconds, owner, now),
            )
            async with db.execute(
                "SELECT team_id, channel_id, thread_ts FROM leases WHERE owner = ? AND lease_until >= ?",
                (owner, now),
            ) as cursor:
                return {ThreadKey(*row) for row in await cursor.fetchall()}

    async def hand_back(self, owner: str) -> int:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE queue SET state = 'pending', admitted = 0 WHERE state != 'done' AND EXISTS (SELECT 1 FROM"
                " leases l WHERE l.owner = ? AND l.team_id = queue.team_id AND l.channel_id ="
                " queue.channel_id AND l.thread_ts = queue.thread_ts)",
                (owner,),
            )
            cursor = await db.execute("DELETE FROM leases WHERE owner = ?", (owner,))
            return cursor.rowcount

    async def next_lease_expiry(self, owner: str) -> float | None:
        row = await self._fetchone(
            "SELECT MIN(l.lease_until) FROM leases l WHERE l.owner != ? AND EXISTS (SELECT 1 FROM queue o"
            " WHERE o.team_id = l.team_id AND o.channel_id = l.channel_id AND o.thread_ts = l.thread_ts"
            " AND o.state != 'done')",
            (owner,),
        )
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]) - time.time())

    async def finish_item(self, item_id: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE queue SET state = 'done', finished_at = ?, admitted = 0 WHERE id = ?", (time.time(), item_id)
            )

    async def set_reply_ts(self, item_id: int, reply_ts: str | None) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE queue SET reply_ts = ? WHERE id = ?", (reply_ts, item_id))

    async def request_stop(
        self, thread: ThreadKey, user_id: str, *, message_ts: str | None = None, item_id: int | None = None
    ) -> StopOutcome:
        async with self._transaction() as db:
            if message_ts is not None:
                cursor = await db.execute(
                    "INSERT INTO stop_requests (team_id, channel_id, message_ts, requested_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (thread.team_id, thread.channel_id, message_ts, time.time()),
                )
                if cursor.rowcount != 1:
                    return "duplicate"
            cursor = await db.execute(
                f"UPDATE queue SET stop_requested_by = COALESCE(stop_requested_by, ?) WHERE {THREAD}"
                " AND state = 'running' AND kind = 'message' AND (? IS NULL OR id = ?)",
                (user_id, *_key(thread), item_id, item_id),
            )
            return "stopping" if cursor.rowcount else "idle"

    async def stop_requests(self, item_ids: Collection[int]) -> dict[int, str]:
        ids = list(item_ids)
        if not ids:
            return {}
        rows = await self._fetchall(
            f"SELECT id, stop_requested_by FROM queue WHERE id IN ({', '.join('?' * len(ids))})"
            " AND stop_requested_by IS NOT NULL",
            tuple(ids),
        )
        return {int(item_id): str(user_id) for item_id, user_id in rows}

    async def mark_queued(self, item_id: int) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE queue SET marked_queued = 1 WHERE id = ? AND state = 'pending' AND NOT marked_queued", (item_id,)
            )
            return cursor.rowcount == 1

    async def item_state(self, item_id: int) -> str | None:
        row = await self._fetchone("SELECT state FROM queue WHERE id = ?", (item_id,))
        return row[0] if row else None

    async def count_waiting(self) -> int:
        row = await self._fetchone("SELECT COUNT(*) FROM queue WHERE state = 'pending'")
        return int(row[0]) if row else 0

    async def listen(self, wake: Callable[[], None]) -> None:
        """SQLite has no notifications: other processes on the file are found by polling."""

    async def prune(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM queue WHERE state = 'done' AND finished_at < ? AND NOT EXISTS (SELECT 1"
                " FROM conversations c WHERE c.team_id = queue.team_id AND c.channel_id ="
                " queue.channel_id AND c.thread_ts = queue.thread_ts AND c.updated_at >= ?) AND NOT EXISTS"
                " (SELECT 1 FROM queue o WHERE o.team_id = queue.team_id AND o.channel_id = queue.channel_id"
                " AND o.thread_ts = queue.thread_ts AND o.state != 'done')",
                (cutoff, cutoff),
            )
            await db.execute("DELETE FROM stop_requests WHERE requested_at < ?", (cutoff,))
            return cursor.rowcount

    # --- conversations ---------------------------------------------------------------------

    async def has_conversation(self, thread: ThreadKey) -> bool:
        return await self._fetchone(f"SELECT 1 FROM conversations WHERE {THREAD}", _key(thread)) is not None

    async def load_conversation(self, thread: ThreadKey) -> Conversation:
        key = _key(thread)
        async with self._lock:
            async with self.db.execute(
                f"SELECT container_id, container_expires_at FROM conversations WHERE {THREAD}", key
            ) as cursor:
                row = await cursor.fetchone()
            async with self.db.execute(
                f"SELECT role, content FROM history WHERE {THREAD} ORDER BY seq", key
            ) as cursor:
                history = [{"role": role, "content": json.loads(content)} async for role, content in cursor]
        return Conversation(
            thread=thread,
            container_id=row[0] if row else None,
            container_expires_at=row[1] if row else None,
            history=history,
        )

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
        key = _key(thread)
        now = time.time()
        async with self._transaction() as db:
            if earlier_history is not None:
                await db.execute(f"DELETE FROM history WHERE {THREAD}", key)
                messages = [*earlier_history, *messages]
            async with db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM history WHERE {THREAD}", key) as cursor:
                row = await cursor.fetchone()
            seq = int(row[0]) if row else 0
            await db.executemany(
                "INSERT INTO history (team_id, channel_id, thread_ts, seq, role, content)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (*key, seq + offset, message["role"], json.dumps(message["content"]))
                    for offset, message in enumerate(messages, start=1)
                ],
            )
            await db.execute(
                "INSERT INTO conversations (team_id, channel_id, thread_ts, container_id,"
                " container_expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (team_id, channel_id, thread_ts) DO UPDATE SET"
                " container_id = excluded.container_id,"
                " container_expires_at = excluded.container_expires_at,"
                " updated_at = excluded.updated_at",
                (*key, container_id, container_expires_at, now, now),
            )
            await db.execute(
                "UPDATE queue SET answered = 1, user_files = ? WHERE id = ?",
                (json.dumps(user_files), item_id),
            )
            await db.executemany(
                "INSERT INTO deliveries (item_id, position, file_id) VALUES (?, ?, ?)",
                [(item_id, position, file_id) for position, file_id in enumerate(outputs)],
            )

    async def reset(self, thread: ThreadKey) -> bool:
        key = _key(thread)
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE conversations SET container_id = NULL, container_expires_at = NULL,"
                f" updated_at = ? WHERE {THREAD}",
                (time.time(), *key),
            )
            existed = cursor.rowcount == 1
            await db.execute(f"DELETE FROM history WHERE {THREAD}", key)
        return existed

    async def add_note(self, message: InboxMessage) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO thread_notes (team_id, channel_id, thread_ts, message_ts, user_id, text)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (*_key(message.thread), message.message_ts, message.user_id, message.text),
            )

    async def notes_before(self, thread: ThreadKey, before_ts: str) -> list[InboxMessage]:
        # Slack timestamps are fixed-width ("1700000000.000100"): as text they sort in time order.
        rows = await self._fetchall(
            f"SELECT message_ts, user_id, text FROM thread_notes WHERE {THREAD} AND message_ts < ? ORDER BY message_ts",
            (*_key(thread), before_ts),
        )
        return [InboxMessage(thread, ts, user, text) for ts, user, text in rows]

    async def drop_notes(self, thread: ThreadKey, message_ts: list[str]) -> None:
        async with self._transaction() as db:
            await db.executemany(
                f"DELETE FROM thread_notes WHERE {THREAD} AND message_ts = ?",
                [(*_key(thread), ts) for ts in message_ts],
            )

    async def idle_threads(self, older_than_seconds: float, limit: int = 100) -> list[ThreadKey]:
        rows = await self._fetchall(
            "SELECT team_id, channel_id, thread_ts FROM conversations c WHERE updated_at < ? AND"
            " (container_id IS NOT NULL OR EXISTS (SELECT 1 FROM history h WHERE h.team_id = c.team_id AND"
            " h.channel_id = c.channel_id AND h.thread_ts = c.thread_ts) OR EXISTS (SELECT 1 FROM participants p"
            " WHERE p.team_id = c.team_id AND p.channel_id = c.channel_id AND p.thread_ts = c.thread_ts))"
            " ORDER BY updated_at LIMIT ?",
            (time.time() - older_than_seconds, limit),
        )
        return [ThreadKey(*row) for row in rows]

    async def forget(self, thread: ThreadKey) -> None:
        key = _key(thread)
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE conversations SET container_id = NULL, container_expires_at = NULL WHERE {THREAD}", key
            )
            await db.execute(f"DELETE FROM history WHERE {THREAD}", key)
            await db.execute(f"DELETE FROM participants WHERE {THREAD}", key)
            await db.execute(f"DELETE FROM thread_notes WHERE {THREAD}", key)

    async def active_threads(self, team_id: str, channel_id: str, user_id: str, limit: int = 10) -> list[ThreadSummary]:
        rows = await self._fetchall(
            "SELECT c.thread_ts, c.updated_at, p.last_text FROM conversations c JOIN participants p"
            " ON p.team_id = c.team_id AND p.channel_id = c.channel_id AND p.thread_ts = c.thread_ts"
            " WHERE c.team_id = ? AND c.channel_id = ? AND c.thread_ts != '' AND p.user_id = ?"
            " ORDER BY c.updated_at DESC LIMIT ?",
            (team_id, channel_id, user_id, limit),
        )
        return [ThreadSummary(ThreadKey(team_id, channel_id, row[0]), row[2] or "", row[1]) for row in rows]

    async def person_threads(self, team_id: str, user_id: str, limit: int = 100) -> list[PersonThread]:
        rows = await self._fetchall(
            "WITH mine AS (SELECT p.channel_id, p.thread_ts, p.last_text, MAX(c.updated_at, p.last_at) AS last_active"
            " FROM participants p JOIN conversations c ON c.team_id = p.team_id AND c.channel_id = p.channel_id"
            " AND c.thread_ts = p.thread_ts WHERE p.team_id = ? AND p.user_id = ?"
            " ORDER BY last_active DESC, p.thread_ts DESC LIMIT ?)"
            f" SELECT m.channel_id, m.thread_ts, m.last_text, m.last_active, {GROUPED_USAGE_SUMS} FROM mine m"
            " LEFT JOIN usage u ON u.team_id = ? AND u.channel_id = m.channel_id AND u.thread_ts = m.thread_ts"
            " GROUP BY m.channel_id, m.thread_ts, m.last_text, m.last_active"
            " ORDER BY m.last_active DESC, m.thread_ts DESC",
            (team_id, user_id, limit, team_id),
        )
        return [
            PersonThread(ThreadKey(team_id, row[0], row[1]), row[2] or "", float(row[3]), Usage(*(int(v) for v in row[4:])))
            for row in rows
        ]

    # --- files owed by answered turns ------------------------------------------------------

    async def pending_deliveries(self, item_id: int) -> list[Delivery]:
        rows = await self._fetchall(
            "SELECT position, file_id, slack_file_id FROM deliveries WHERE item_id = ? AND delivered = 0"
            " ORDER BY position",
            (item_id,),
        )
        return [Delivery(row[0], row[1], row[2]) for row in rows]

    async def delivery_started(self, item_id: int, position: int, slack_file_id: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE deliveries SET slack_file_id = ? WHERE item_id = ? AND position = ?",
                (slack_file_id, item_id, position),
            )

    async def delivery_done(self, item_id: int, position: int) -> None:
        async with self._transaction() as db:
            await db.execute(
                "UPDATE deliveries SET delivered = 1 WHERE item_id = ? AND position = ?", (item_id, position)
            )

    # --- usage: one row per answered turn, kept across resets ------------------------------

    async def record_usage(self, thread: ThreadKey, user_id: str, model: str, usage: Usage) -> None:
        async with self._lock:  # one statement: it commits on its own
            await self.db.execute(
                "INSERT INTO usage (team_id, channel_id, thread_ts, user_id, model, input_tokens,"
                " cache_creation_input_tokens, cache_read_input_tokens, output_tokens, code_runs,"
                " recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *_key(thread), user_id, model, usage.input_tokens, usage.cache_creation_input_tokens,
                    usage.cache_read_input_tokens, usage.output_tokens, usage.code_runs, time.time(),
                ),
            )

    async def thread_usage(self, thread: ThreadKey) -> Usage:
        row = await self._fetchone(f"{USAGE_SUMS} WHERE {THREAD}", _key(thread))
        return Usage(*(int(value) for value in row))

    async def user_usage(self, team_id: str, user_id: str, since: float = 0.0) -> Usage:
        row = await self._fetchone(
            f"{USAGE_SUMS} WHERE team_id = ? AND user_id = ? AND recorded_at >= ?", (team_id, user_id, since)
        )
        return Usage(*(int(value) for value in row))

    async def team_usage(self, team_id: str, since: float = 0.0) -> Usage:
        row = await self._fetchone(f"{USAGE_SUMS} WHERE team_id = ? AND recorded_at >= ?", (team_id, since))
        return Usage(*(int(value) for value in row))

    async def usage_by(self, team_id: str, group: UsageGroup, since: float = 0.0) -> dict[str, Usage]:
        column = USAGE_GROUP_COLUMNS[group]
        rows = await self._fetchall(
            f"SELECT u.{column}, {GROUPED_USAGE_SUMS} FROM usage u WHERE u.team_id = ? AND u.recorded_at >= ?"
            f" GROUP BY u.{column}",
            (team_id, since),
        )
        return {row[0]: Usage(*(int(value) for value in row[1:])) for row in rows}


def _statements(script: str) -> list[str]:
    """A migration file's statements (`;` at the end of a line ends one; no triggers here)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";\n") if statement.strip().strip(";")]
