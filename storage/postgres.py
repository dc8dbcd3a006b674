"""PostgreSQL storage through asyncpg: a connection pool, history as jsonb, times as timestamptz.

Any number of processes share one database. Leases are rows claimed with a conditional
upsert, so one process at a time holds a thread; `NOTIFY threadbox_queue` wakes the others
when work is queued or handed back, and a slow poll covers a lost notification.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection
from typing import Any

import asyncpg

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

logger = logging.getLogger(__name__)

CHANNEL = "threadbox_queue"
# Any constant: every process takes this advisory lock to migrate, one after the other.
MIGRATION_LOCK = 0x7468726561640001
# ... and this one to admit a turn under the caps, so two processes never both take the last place.
ADMISSION_LOCK = 0x7468726561640002
THREAD = "team_id = $1 AND channel_id = $2 AND thread_ts = $3"
OPEN_ITEMS = "SELECT 1 FROM queue o WHERE o.team_id = $1 AND o.channel_id = $2 AND o.thread_ts = $3 AND o.state <> 'done'"
LISTEN_RETRY_SECONDS = 2.0
# Whether `q` is its thread's head: the oldest item not done.
IS_HEAD = (
    "q.id = (SELECT MIN(h.id) FROM queue h WHERE h.team_id = q.team_id AND h.channel_id = q.channel_id"
    " AND h.thread_ts = q.thread_ts AND h.state <> 'done')"
)
# Turns that count against the caps: admitted, running, and their process alive.
BUSY = (
    "SELECT r.id, r.team_id, r.user_id FROM queue r JOIN leases rl USING (team_id, channel_id, thread_ts)"
    " WHERE r.state <> 'done' AND r.admitted AND rl.lease_until >= now()"
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


def _fits(per_person: str, overall: str) -> str:
    """SQL: whether a new turn of `q`'s person fits under the caps given by two parameters."""
    return (
        f"(({per_person}::int IS NULL OR (SELECT COUNT(*) FROM busy b WHERE b.team_id = q.team_id"
        f" AND b.user_id = q.user_id) < {per_person}) AND ({overall}::int IS NULL OR (SELECT COUNT(*) FROM busy) < {overall}))"
    )


def _key(thread: ThreadKey) -> tuple[str, str, str]:
    return (thread.team_id, thread.channel_id, thread.thread_ts)


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("jsonb", "json"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


class PostgresStore:
    """Conversations, their history and the durable queue, in PostgreSQL."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, database_url: str) -> PostgresStore:
        return cls(database_url)

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=self._min_size, max_size=self._max_size, init=_init_connection
        )
        await self._migrate()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait({self._listener}, timeout=5)
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def schema_version(self) -> int:
        return int(await self.pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    async def _migrate(self) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            for number, script in migrations("postgres"):
                if number > version:
                    await connection.execute(script)
                    await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", number)

    async def check_writable(self) -> None:
        await self.pool.execute(
            "INSERT INTO health (id, checked_at) VALUES (1, now())"
            " ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at"
        )

    # --- the queue -------------------------------------------------------------------------

    async def enqueue_message(self, message: InboxMessage, *, starts_conversation: bool) -> Enqueued | None:
        key = _key(message.thread)
        async with self.pool.acquire() as connection, connection.transaction():
            item_id = await connection.fetchval(
                "INSERT INTO queue (team_id, channel_id, thread_ts, kind, message_ts, user_id, text, files)"
                " VALUES ($1, $2, $3, 'message', $4, $5, $6, $7)"
                " ON CONFLICT (team_id, channel_id, message_ts) DO NOTHING RETURNING id",
                *key, message.message_ts, message.user_id, message.text, message.files,
            )
            if item_id is None:
                return None
            if starts_conversation:
                await connection.execute(
                    "INSERT INTO conversations (team_id, channel_id, thread_ts) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING",
                    *key,
                )
            await connection.execute(
                "INSERT INTO participants (team_id, channel_id, thread_ts, user_id, last_text, last_at)"
                " VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (team_id, channel_id, thread_ts, user_id)"
                " DO UPDATE SET last_text = excluded.last_text, last_at = excluded.last_at",
                *key, message.user_id, message.text,
            )
            return await self._queued(connection, key, item_id)

    async def enqueue_reset(self, request: ResetRequest) -> Enqueued:
        key = _key(request.thread)
        async with self.pool.acquire() as connection, connection.transaction():
            item_id = await connection.fetchval(
                "INSERT INTO queue (team_id, channel_id, thread_ts, kind, user_id, response_url,"
                " replace_original) VALUES ($1, $2, $3, 'reset', $4, $5, $6) RETURNING id",
                *key, request.user_id, request.response_url, request.replace_original,
            )
            return await self._queued(connection, key, item_id)

    @staticmethod
    async def _queued(connection: asyncpg.Connection, key: tuple[str, str, str], item_id: int) -> Enqueued:
        """Tell the other processes (at commit), and whether the item waits behind others."""
        await connection.execute("SELECT pg_notify($1, '')", CHANNEL)
        waits = await connection.fetchval(f"SELECT EXISTS ({OPEN_ITEMS} AND o.id < $4)", *key, item_id)
        return Enqueued(int(item_id), bool(waits))

    async def claim_thread(
        self, owner: str, lease_seconds: float, exclude: Collection[ThreadKey], limits: TurnLimits = TurnLimits()
    ) -> ThreadKey | None:
        async with self.pool.acquire() as connection, connection.transaction():
            if limits.any:  # claims that count against the caps go one at a time
                await connection.execute("SELECT pg_advisory_xact_lock($1)", ADMISSION_LOCK)
            return await self._claim(connection, owner, lease_seconds, exclude, limits)

    @staticmethod
    async def _claim(
        connection: asyncpg.Connection, owner: str, lease_seconds: float, exclude: Collection[ThreadKey], limits: TurnLimits
    ) -> ThreadKey | None:
        # Each thread by its head item; a new turn whose person (or everyone) is at a cap waits.
        rows = await connection.fetch(
            f"WITH busy AS ({BUSY}) SELECT q.team_id, q.channel_id, q.thread_ts, q.id FROM queue q LEFT JOIN leases l"
            " USING (team_id, channel_id, thread_ts)"
            " WHERE q.state <> 'done' AND (l.owner IS NULL OR l.lease_until < now() OR l.owner = $1)"
            f" AND {IS_HEAD} AND (q.kind <> 'message' OR q.answered OR q.state = 'running' OR {_fits('$3', '$4')})"
            " ORDER BY q.id LIMIT $2",
            owner, len(exclude) + 5, limits.per_person, limits.overall,
        )
        for row in rows:
            thread = ThreadKey(row["team_id"], row["channel_id"], row["thread_ts"])
            if thread in exclude:
                continue
            # The upsert is the claim: concurrent claimers of one thread queue up on its row,
            # and only the first finds the lease free.
            taken = await connection.fetchval(
                "INSERT INTO leases (team_id, channel_id, thread_ts, owner, lease_until)"
                " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))"
                " ON CONFLICT (team_id, channel_id, thread_ts) DO UPDATE"
                " SET owner = excluded.owner, lease_until = excluded.lease_until"
                " WHERE leases.lease_until < now() OR leases.owner = excluded.owner RETURNING 1",
                *_key(thread), owner, lease_seconds,
            )
            if taken:
                if limits.any:  # its head counts against the caps from now on
                    await connection.execute(
                        "UPDATE queue SET admitted = true WHERE id = $1 AND kind = 'message' AND NOT answered", row["id"]
                    )
                return thread
        return None

    async def next_item(self, thread: ThreadKey, owner: str, lease_seconds: float) -> QueueItem | None:
        key = _key(thread)
        async with self.pool.acquire() as connection, connection.transaction():
            held = await connection.fetchval(
                f"UPDATE leases SET lease_until = now() + make_interval(secs => $5) WHERE {THREAD}"
                " AND owner = $4 AND lease_until >= now() RETURNING 1",
                *key, owner, lease_seconds,
            )
            if not held:
                raise LeaseLost(str(thread))
            row = await connection.fetchrow(
                f"SELECT {QueueItem.QUERY_COLUMNS} FROM queue WHERE {THREAD} AND state <> 'done'"
                " ORDER BY id LIMIT 1 FOR UPDATE",
                *key,
            )
            if row is None:
                return None
            await connection.execute("UPDATE queue SET state = 'running', attempts = attempts + 1 WHERE id = $1", row["id"])
        return QueueItem.from_row(thread, row)

    async def admit(self, item_id: int, thread: ThreadKey, owner: str, limits: TurnLimits) -> bool:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", ADMISSION_LOCK)
            fits = await connection.fetchval(
                f"WITH busy AS ({BUSY} AND r.id <> $1) SELECT {_fits('$2', '$3')} FROM queue q WHERE q.id = $1",
                item_id, limits.per_person, limits.overall,
            )
            if fits:
                await connection.execute("UPDATE queue SET admitted = true WHERE id = $1", item_id)
                return True
            await connection.execute(
                "UPDATE queue SET state = 'pending', admitted = false, attempts = attempts - 1"
                " WHERE id = $1 AND state = 'running'",
                item_id,
            )
            await connection.execute(f"DELETE FROM leases WHERE {THREAD} AND owner = $4", *_key(thread), owner)
        return False

    async def running_turns(self, team_id: str, user_id: str) -> tuple[int, int]:
        counts = await self.pool.fetchrow(
            f"WITH busy AS ({BUSY}) SELECT COUNT(*) FILTER (WHERE team_id = $1 AND user_id = $2), COUNT(*) FROM busy",
            team_id, user_id,
        )
        return int(counts[0]), int(counts[1])

    async def held_back(self, limits: TurnLimits, limit: int = 20) -> list[InboxMessage]:
        rows = await self.pool.fetch(
            f"WITH busy AS ({BUSY}) SELECT q.team_id, q.channel_id, q.thread_ts, q.message_ts, q.user_id, q.text, q.id"
            " FROM queue q LEFT JOIN leases l USING (team_id, channel_id, thread_ts)"
            " WHERE q.state = 'pending' AND q.kind = 'message' AND NOT q.answered AND NOT q.marked_queued"
            f" AND (l.owner IS NULL OR l.lease_until < now()) AND {IS_HEAD} AND NOT {_fits('$1', '$2')}"
            " ORDER BY q.id LIMIT $3",
            limits.per_person, limits.overall, limit,
        )
        return [
            InboxMessage(ThreadKey(r["team_id"], r["channel_id"], r["thread_ts"]), r["message_ts"], r["user_id"], r["text"], id=r["id"])
            for r in rows
        ]

    async def release_thread(self, thread: ThreadKey, owner: str) -> bool:
        key = _key(thread)
        status = await self.pool.execute(
            f"DELETE FROM leases WHERE {THREAD} AND owner = $4 AND NOT EXISTS ({OPEN_ITEMS})", *key, owner
        )
        return status == "DELETE 1"

    async def renew_leases(self, owner: str, lease_seconds: float) -> set[ThreadKey]:
        rows = await self.pool.fetch(
            "UPDATE leases SET lease_until = now() + make_interval(secs => $2)"
            " WHERE owner = $1 AND lease_until >= now() RETURNING team_id, channel_id, thread_ts",
            owner, lease_seconds,
        )
        return {ThreadKey(*row) for row in rows}

    async def hand_back(self, owner: str) -> int:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "UPDATE queue q SET state = 'pending', admitted = false FROM leases l WHERE l.owner = $1 AND q.state <>"
                " 'done' AND l.team_id = q.team_id AND l.channel_id = q.channel_id"
                " AND l.thread_ts = q.thread_ts",
                owner,
            )
            status = await connection.execute("DELETE FROM leases WHERE owner = $1", owner)
            await connection.execute("SELECT pg_notify($1, '')", CHANNEL)
        return int(status.split()[-1])

    async def next_lease_expiry(self, owner: str) -> float | None:
        seconds = await self.pool.fetchval(
            "SELECT EXTRACT(EPOCH FROM MIN(l.lease_until) - now()) FROM leases l WHERE l.owner <> $1 AND EXISTS"
            " (SELECT 1 FROM queue o WHERE o.team_id = l.team_id AND o.channel_id = l.channel_id"
            " AND o.thread_ts = l.thread_ts AND o.state <> 'done')",
            owner,
        )
        return None if seconds is None else max(0.0, float(seconds))

    async def finish_item(self, item_id: int) -> None:
        """Done; the other processes hear of it, as a turn waiting for room under a cap may now run."""
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "UPDATE queue SET state = 'done', finished_at = now(), admitted = false WHERE id = $1", item_id
            )
            await connection.execute("SELECT pg_notify($1, '')", CHANNEL)

    async def set_reply_ts(self, item_id: int, reply_ts: str | None) -> None:
        await self.pool.execute("UPDATE queue SET reply_ts = $2 WHERE id = $1", item_id, reply_ts)

    async def request_stop(
        self, thread: ThreadKey, user_id: str, *, message_ts: str | None = None, item_id: int | None = None
    ) -> StopOutcome:
        key = _key(thread)
        async with self.pool.acquire() as connection, connection.transaction():
            if message_ts is not None:
                first = await connection.fetchval(
                    "INSERT INTO stop_requests (team_id, channel_id, message_ts) VALUES ($1, $2, $3)"
                    " ON CONFLICT DO NOTHING RETURNING 1",
                    thread.team_id, thread.channel_id, message_ts,
                )
                if not first:
                    return "duplicate"
            stopping = await connection.fetchval(
                f"UPDATE queue SET stop_requested_by = COALESCE(stop_requested_by, $4) WHERE {THREAD}"
                " AND state = 'running' AND kind = 'message' AND ($5::bigint IS NULL OR id = $5) RETURNING id",
                *key, user_id, item_id,
            )
            if stopping is None:
                return "idle"
            await connection.execute("SELECT pg_notify($1, '')", CHANNEL)
        return "stopping"

    async def stop_requests(self, item_ids: Collection[int]) -> dict[int, str]:
        if not item_ids:
            return {}
        rows = await self.pool.fetch(
            "SELECT id, stop_requested_by FROM queue WHERE id = ANY($1::bigint[]) AND stop_requested_by IS NOT NULL",
            list(item_ids),
        )
        return {int(row["id"]): str(row["stop_requested_by"]) for row in rows}

    async def mark_queued(self, item_id: int) -> bool:
        status = await self.pool.execute(
            "UPDATE queue SET marked_queued = true WHERE id = $1 AND state = 'pending' AND NOT marked_queued", item_id
        )
        return status == "UPDATE 1"

    async def item_state(self, item_id: int) -> str | None:
        return await self.pool.fetchval("SELECT state FROM queue WHERE id = $1", item_id)

    async def count_waiting(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM queue WHERE state = 'pending'"))

    async def listen(self, wake: Callable[[], None]) -> None:
        """Keep one connection listening for the whole life of the store, reconnecting as needed."""
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen_forever(wake, ready))
        await asyncio.wait_for(ready.wait(), timeout=30)

    async def _listen_forever(self, wake: Callable[[], None], ready: asyncio.Event) -> None:
        while True:
            try:
                connection = await asyncpg.connect(self._dsn)
            except (OSError, asyncpg.PostgresError) as error:
                logger.warning("cannot listen for queue notifications (%s); retrying", error)
                ready.set()
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _connection: lost.set())
            try:
                await connection.add_listener(CHANNEL, lambda *_args: wake())
                ready.set()
                wake()  # whatever was queued while nobody listened
                await lost.wait()
                logger.warning("queue notifications lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as error:
                logger.warning("queue notifications failed (%s); reconnecting", error)
            finally:
                if not connection.is_closed():
                    await connection.close()
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    async def prune(self, older_than_seconds: float) -> int:
        status = await self.pool.execute(
            "DELETE FROM queue q WHERE q.state = 'done' AND q.finished_at < now() - make_interval(secs => $1)"
            " AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.team_id = q.team_id AND c.channel_id ="
            " q.channel_id AND c.thread_ts = q.thread_ts AND c.updated_at >= now() - make_interval(secs => $1))"
            " AND NOT EXISTS (SELECT 1 FROM queue o WHERE o.team_id = q.team_id AND o.channel_id = q.channel_id"
            " AND o.thread_ts = q.thread_ts AND o.state <> 'done')",
            older_than_seconds,
        )
        await self.pool.execute(
            "DELETE FROM stop_requests WHERE requested_at < now() - make_interval(secs => $1)", older_than_seconds
        )
        return int(status.split()[-1])

    # --- conversations ---------------------------------------------------------------------

    async def has_conversation(self, thread: ThreadKey) -> bool:
        return bool(await self.pool.fetchval(f"SELECT EXISTS (SELECT 1 FROM conversations WHERE {THREAD})", *_key(thread)))

    async def load_conversation(self, thread: ThreadKey) -> Conversation:
        key = _key(thread)
        async with self.pool.acquire() as connection, connection.transaction(isolation="repeatable_read", readonly=True):
            row = await connection.fetchrow(
                f"SELECT container_id, EXTRACT(EPOCH FROM container_expires_at) AS expires FROM conversations WHERE {THREAD}",
                *key,
            )
            rows = await connection.fetch(f"SELECT role, content FROM history WHERE {THREAD} ORDER BY seq", *key)
        expires = row["expires"] if row else None
        return Conversation(
            thread=thread,
            container_id=row["container_id"] if row else None,
            container_expires_at=float(expires) if expires is not None else None,
            history=[{"role": r["role"], "content": r["content"]} for r in rows],
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
        async with self.pool.acquire() as connection, connection.transaction():
            if earlier_history is not None:
                await connection.execute(f"DELETE FROM history WHERE {THREAD}", *key)
                messages = [*earlier_history, *messages]
            seq = await connection.fetchval(f"SELECT COALESCE(MAX(seq), 0) FROM history WHERE {THREAD}", *key)
            await connection.executemany(
                "INSERT INTO history (team_id, channel_id, thread_ts, seq, role, content)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (*key, seq + offset, message["role"], message["content"])
                    for offset, message in enumerate(messages, start=1)
                ],
            )
            await connection.execute(
                "INSERT INTO conversations (team_id, channel_id, thread_ts, container_id, container_expires_at)"
                " VALUES ($1, $2, $3, $4, to_timestamp($5)) ON CONFLICT (team_id, channel_id, thread_ts)"
                " DO UPDATE SET container_id = excluded.container_id,"
                " container_expires_at = excluded.container_expires_at, updated_at = now()",
                *key, container_id, container_expires_at,
            )
            await connection.execute(
                "UPDATE queue SET answered = true, user_files = $2 WHERE id = $1",
                item_id, [list(pair) for pair in user_files],
            )
            await connection.executemany(
                "INSERT INTO deliveries (item_id, position, file_id) VALUES ($1, $2, $3)",
                [(item_id, position, file_id) for position, file_id in enumerate(outputs)],
            )

    async def reset(self, thread: ThreadKey) -> bool:
        key = _key(thread)
        async with self.pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                "UPDATE conversations SET container_id = NULL, container_expires_at = NULL,"
                f" updated_at = now() WHERE {THREAD}",
                *key,
            )
            await connection.execute(f"DELETE FROM history WHERE {THREAD}", *key)
        return status == "UPDATE 1"

    async def add_note(self, message: InboxMessage) -> None:
        await self.pool.execute(
            "INSERT INTO thread_notes (team_id, channel_id, thread_ts, message_ts, user_id, text)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            *_key(message.thread), message.message_ts, message.user_id, message.text,
        )

    async def notes_before(self, thread: ThreadKey, before_ts: str) -> list[InboxMessage]:
        # Slack timestamps are fixed-width ("1700000000.000100"): as text they sort in time order.
        rows = await self.pool.fetch(
            f"SELECT message_ts, user_id, text FROM thread_notes WHERE {THREAD} AND message_ts COLLATE \"C\" < $4"
            " ORDER BY message_ts COLLATE \"C\"",
            *_key(thread), before_ts,
        )
        return [InboxMessage(thread, r["message_ts"], r["user_id"], r["text"]) for r in rows]

    async def drop_notes(self, thread: ThreadKey, message_ts: list[str]) -> None:
        await self.pool.execute(
            f"DELETE FROM thread_notes WHERE {THREAD} AND message_ts = ANY($4::text[])", *_key(thread), message_ts
        )

    async def idle_threads(self, older_than_seconds: float, limit: int = 100) -> list[ThreadKey]:
        rows = await self.pool.fetch(
            "SELECT team_id, channel_id, thread_ts FROM conversations c"
            " WHERE updated_at < now() - make_interval(secs => $1) AND (container_id IS NOT NULL"
            " OR EXISTS (SELECT 1 FROM history h WHERE (h.team_id, h.channel_id, h.thread_ts) ="
            " (c.team_id, c.channel_id, c.thread_ts)) OR EXISTS (SELECT 1 FROM participants p WHERE"
            " (p.team_id, p.channel_id, p.thread_ts) = (c.team_id, c.channel_id, c.thread_ts)))"
            " ORDER BY updated_at LIMIT $2",
            older_than_seconds, limit,
        )
        return [ThreadKey(*row) for row in rows]

    async def forget(self, thread: ThreadKey) -> None:
        key = _key(thread)
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                f"UPDATE conversations SET container_id = NULL, container_expires_at = NULL WHERE {THREAD}", *key
            )
            await connection.execute(f"DELETE FROM history WHERE {THREAD}", *key)
            await connection.execute(f"DELETE FROM participants WHERE {THREAD}", *key)
            await connection.execute(f"DELETE FROM thread_notes WHERE {THREAD}", *key)

    async def active_threads(self, team_id: str, channel_id: str, user_id: str, limit: int = 10) -> list[ThreadSummary]:
        rows = await self.pool.fetch(
            "SELECT c.thread_ts, EXTRACT(EPOCH FROM c.updated_at) AS updated, p.last_text FROM conversations c"
            " JOIN participants p USING (team_id, channel_id, thread_ts)"
            " WHERE c.team_id = $1 AND c.channel_id = $2 AND c.thread_ts <> '' AND p.user_id = $3"
            " ORDER BY c.updated_at DESC LIMIT $4",
            team_id, channel_id, user_id, limit,
        )
        return [
            ThreadSummary(ThreadKey(team_id, channel_id, row["thread_ts"]), row["last_text"] or "", float(row["updated"]))
            for row in rows
        ]

    async def person_threads(self, team_id: str, user_id: str, limit: int = 100) -> list[PersonThread]:
        rows = await self.pool.fetch(
            "WITH mine AS (SELECT p.channel_id, p.thread_ts, p.last_text,"
            " GREATEST(c.updated_at, p.last_at) AS last_active FROM participants p"
            " JOIN conversations c USING (team_id, channel_id, thread_ts) WHERE p.team_id = $1 AND p.user_id = $2"
            " ORDER BY last_active DESC, p.thread_ts DESC LIMIT $3)"
            " SELECT m.channel_id, m.thread_ts, m.last_text, EXTRACT(EPOCH FROM m.last_active) AS active,"
            f" {GROUPED_USAGE_SUMS} FROM mine m"
            " LEFT JOIN usage u ON u.team_id = $1 AND u.channel_id = m.channel_id AND u.thread_ts = m.thread_ts"
            " GROUP BY m.channel_id, m.thread_ts, m.last_text, m.last_active"
            " ORDER BY m.last_active DESC, m.thread_ts DESC",
            team_id, user_id, limit,
        )
        return [
            PersonThread(
                ThreadKey(team_id, row[0], row[1]), row[2] or "", float(row[3]), Usage(*(int(v) for v in row[4:]))
            )
            for row in rows
        ]

    # --- usage: one row per answered turn, kept across resets ------------------------------

    async def record_usage(self, thread: ThreadKey, user_id: str, model: str, usage: Usage) -> None:
        await self.pool.execute(
            "INSERT INTO usage (team_id, channel_id, thread_ts, user_id, model, input_tokens,"
            " cache_creation_input_tokens, cache_read_input_tokens, output_tokens, code_runs)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            *_key(thread), user_id, model, usage.input_tokens, usage.cache_creation_input_tokens,
            usage.cache_read_input_tokens, usage.output_tokens, usage.code_runs,
        )

    async def thread_usage(self, thread: ThreadKey) -> Usage:
        row = await self.pool.fetchrow(f"{USAGE_SUMS} WHERE {THREAD}", *_key(thread))
        return Usage(*(int(value) for value in row))

    async def user_usage(self, team_id: str, user_id: str, since: float = 0.0) -> Usage:
        row = await self.pool.fetchrow(
            f"{USAGE_SUMS} WHERE team_id = $1 AND user_id = $2 AND recorded_at >= to_timestamp($3)",
            team_id, user_id, since,
        )
        return Usage(*(int(value) for value in row))

    async def team_usage(self, team_id: str, since: float = 0.0) -> Usage:
        row = await self.pool.fetchrow(
            f"{USAGE_SUMS} WHERE team_id = $1 AND recorded_at >= to_timestamp($2)", team_id, since
        )
        return Usage(*(int(value) for value in row))

    async def usage_by(self, team_id: str, group: UsageGroup, since: float = 0.0) -> dict[str, Usage]:
        column = USAGE_GROUP_COLUMNS[group]
        rows = await self.pool.fetch(
            f"SELECT u.{column}, {GROUPED_USAGE_SUMS} FROM usage u"
            f" WHERE u.team_id = $1 AND u.recorded_at >= to_timestamp($2) GROUP BY u.{column}",
            team_id, since,
        )
        return {row[0]: Usage(*(int(value) for value in row[1:])) for row in rows}

    # --- files owed by answered turns ------------------------------------------------------

    async def pending_deliveries(self, item_id: int) -> list[Delivery]:
        rows = await self.pool.fetch(
            "SELECT position, file_id, slack_file_id FROM deliveries WHERE item_id = $1 AND NOT delivered"
            " ORDER BY position",
            item_id,
        )
        return [Delivery(row["position"], row["file_id"], row["slack_file_id"]) for row in rows]

    async def delivery_started(self, item_id: int, position: int, slack_file_id: str) -> None:
        await self.pool.execute(
            "UPDATE deliveries SET slack_file_id = $3 WHERE item_id = $1 AND position = $2",
            item_id, position, slack_file_id,
        )

    async def delivery_done(self, item_id: int, position: int) -> None:
        await self.pool.execute(
            "UPDATE deliveries SET delivered = true WHERE item_id = $1 AND position = $2", item_id, position
        )
