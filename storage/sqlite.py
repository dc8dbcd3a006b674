"""SQLite storage through aiosqlite: WAL mode, schema versioned by `PRAGMA user_version`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .models import Conversation, InboxMessage, ThreadKey, ThreadSummary

# Each entry moves the schema one version up; append, never edit a released entry.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE conversations (
        team_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        thread_ts TEXT NOT NULL,
        container_id TEXT,
        container_expires_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (team_id, channel_id, thread_ts)
    );
    CREATE TABLE history (
        team_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        thread_ts TEXT NOT NULL,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (team_id, channel_id, thread_ts, seq)
    );
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        team_id TEXT NOT NULL,
        channel_id TEXT NOT NULL,
        message_ts TEXT NOT NULL,
        thread_ts TEXT NOT NULL,
        user_id TEXT NOT NULL,
        text TEXT NOT NULL,
        files TEXT NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        received_at REAL NOT NULL,
        UNIQUE (team_id, channel_id, message_ts)
    );
    CREATE INDEX inbox_pending ON inbox (done, team_id, channel_id, thread_ts, id);
    CREATE INDEX inbox_user ON inbox (team_id, channel_id, user_id);
    """,
]


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


class SQLiteStore:
    """Conversations, their history and the inbox of accepted messages, in one SQLite file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        # One connection is shared by every coroutine: writes take turns, each in its own
        # transaction, so one coroutine's statements never land in another's transaction.
        self._write_lock = asyncio.Lock()

    @classmethod
    def from_url(cls, database_url: str) -> SQLiteStore:
        return cls(sqlite_path(database_url))

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
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
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def schema_version(self) -> int:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        version = await self.schema_version()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    # --- the inbox: exactly-once acceptance and per-thread order -------------------------

    async def accept_message(self, message: InboxMessage) -> bool:
        """Persist a message for answering; False when the same Slack message was accepted before."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO inbox (team_id, channel_id, message_ts, thread_ts, user_id,"
                " text, files, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    message.thread.team_id,
                    message.thread.channel_id,
                    message.message_ts,
                    message.thread.thread_ts,
                    message.user_id,
                    message.text,
                    json.dumps(message.files),
                    time.time(),
                ),
            )
            return cursor.rowcount == 1

    async def next_pending(self, thread: ThreadKey) -> InboxMessage | None:
        async with self.db.execute(
            "SELECT id, message_ts, user_id, text, files FROM inbox WHERE done = 0 AND team_id = ?"
            " AND channel_id = ? AND thread_ts = ? ORDER BY id LIMIT 1",
            (thread.team_id, thread.channel_id, thread.thread_ts),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return InboxMessage(
            thread=thread,
            message_ts=row[1],
            user_id=row[2],
            text=row[3],
            files=json.loads(row[4]),
            id=row[0],
        )

    async def mark_done(self, message: InboxMessage) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE inbox SET done = 1 WHERE id = ?", (message.id,))

    async def threads_with_pending(self) -> list[ThreadKey]:
        async with self.db.execute(
            "SELECT team_id, channel_id, thread_ts, MIN(id) FROM inbox WHERE done = 0"
            " GROUP BY team_id, channel_id, thread_ts ORDER BY MIN(id)"
        ) as cursor:
            rows = await cursor.fetchall()
        return [ThreadKey(row[0], row[1], row[2]) for row in rows]

    async def prune_inbox(self, older_than_seconds: float) -> int:
        """Forget answered messages old enough that Slack no longer retries them."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM inbox WHERE done = 1 AND received_at < ?",
                (time.time() - older_than_seconds,),
            )
            return cursor.rowcount

    # --- conversations ---------------------------------------------------------------------

    async def has_conversation(self, thread: ThreadKey) -> bool:
        async with self.db.execute(
            "SELECT 1 FROM conversations WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
            (thread.team_id, thread.channel_id, thread.thread_ts),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def start_conversation(self, thread: ThreadKey) -> None:
        """Mark the thread as one the bot is part of (follow-ups need no mention)."""
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "INSERT OR IGNORE INTO conversations (team_id, channel_id, thread_ts, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?)",
                (thread.team_id, thread.channel_id, thread.thread_ts, now, now),
            )

    async def load_conversation(self, thread: ThreadKey) -> Conversation:
        key = (thread.team_id, thread.channel_id, thread.thread_ts)
        async with self.db.execute(
            "SELECT container_id, container_expires_at FROM conversations WHERE team_id = ?"
            " AND channel_id = ? AND thread_ts = ?",
            key,
        ) as cursor:
            row = await cursor.fetchone()
        async with self.db.execute(
            "SELECT role, content FROM history WHERE team_id = ? AND channel_id = ? AND thread_ts = ?"
            " ORDER BY seq",
            key,
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
        thread: ThreadKey,
        messages: list[dict[str, Any]],
        container_id: str | None,
        container_expires_at: float | None,
        answered: InboxMessage | None = None,
    ) -> None:
        """Append a finished turn's messages, remember its container and mark the message it
        answered as done, atomically: a crash after this point never runs the turn again."""
        key = (thread.team_id, thread.channel_id, thread.thread_ts)
        now = time.time()
        async with self._transaction() as db:
            async with db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM history WHERE team_id = ? AND channel_id = ?"
                " AND thread_ts = ?",
                key,
            ) as cursor:
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
            if answered is not None:
                await db.execute("UPDATE inbox SET done = 1 WHERE id = ?", (answered.id,))

    async def reset(self, thread: ThreadKey) -> bool:
        """Forget the container and history; the thread stays one the bot is part of.

        Returns False when the bot had no conversation in that thread.
        """
        key = (thread.team_id, thread.channel_id, thread.thread_ts)
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE conversations SET container_id = NULL, container_expires_at = NULL,"
                " updated_at = ? WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
                (time.time(), *key),
            )
            existed = cursor.rowcount == 1
            await db.execute(
                "DELETE FROM history WHERE team_id = ? AND channel_id = ? AND thread_ts = ?", key
            )
        return existed

    async def active_threads(
        self, team_id: str, channel_id: str, user_id: str, limit: int = 10
    ) -> list[ThreadSummary]:
        """Threads in a channel where the user talked to the bot, most recent first."""
        async with self.db.execute(
            "SELECT c.thread_ts, c.updated_at, (SELECT i2.text FROM inbox i2 WHERE i2.team_id ="
            " c.team_id AND i2.channel_id = c.channel_id AND i2.thread_ts = c.thread_ts"
            " ORDER BY i2.id DESC LIMIT 1) FROM conversations c WHERE c.team_id = ? AND"
            " c.channel_id = ? AND c.thread_ts != '' AND EXISTS (SELECT 1 FROM inbox i WHERE"
            " i.team_id = c.team_id AND i.channel_id = c.channel_id AND i.thread_ts = c.thread_ts"
            " AND i.user_id = ?) ORDER BY c.updated_at DESC LIMIT ?",
            (team_id, channel_id, user_id, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            ThreadSummary(ThreadKey(team_id, channel_id, row[0]), row[2] or "", row[1])
            for row in rows
        ]
