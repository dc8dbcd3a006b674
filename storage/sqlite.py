"""The SQLite connector, through aiosqlite: WAL mode, schema versioned by `PRAGMA user_version`.

One connection per process, statements taking turns under a lock. Several processes on one
host may share the file (leases work through it; they wake each other by polling only).
Times are epoch seconds, bound as `:now` when each statement runs (after the lock is held).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TypeVar

import aiosqlite

from .connector import Connection, Params, Row, load_queries, migrations, opened
from .store import Store

T = TypeVar("T")
PRAGMA_ATTEMPTS = 100
PRAGMA_RETRY_SECONDS = 0.05
"""Asking again for a PRAGMA SQLite refused as locked: for up to 5 seconds."""


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


class _TakingTurns:
    """An `asyncio.Lock` whose urgent callers go before the others waiting: a transaction
    Slack's acknowledgement waits on never queues behind the claims and turns of a busy
    minute, only behind the one running and other urgent ones."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def held(self, *, urgent: bool = False) -> AsyncIterator[None]:
        if self._held:
            line = self._urgent if urgent else self._others
            turn = asyncio.get_running_loop().create_future()
            line.append(turn)
            try:
                await turn
            except BaseException:
                if turn in line:
                    line.remove(turn)
                elif not turn.cancelled():  # handed the lock as it was cancelled: pass it on
                    self._pass()
                raise
        self._held = True
        try:
            yield
        finally:
            self._pass()

    def _pass(self) -> None:
        """Hand the lock to the next waiter (urgent ones first), or free it."""
        for line in (self._urgent, self._others):
            while line:
                turn = line.popleft()
                if not turn.done():
                    turn.set_result(None)  # it holds the lock now: `_held` stays True
                    return
        self._held = False


class _Statements:
    """Named queries on the shared connection, for a caller that already holds the lock.

    Each statement is one trip to aiosqlite's thread (`execute_fetchall` runs it to its end
    and drops its cursor there): a trip costs about 0.1 ms, the most of a write's price."""

    def __init__(self, db: aiosqlite.Connection, queries: dict[str, str]) -> None:
        self._db = db
        self._queries = queries

    async def execute(self, query: str, params: Params | None = None) -> int:
        """The rows the statement changed (no triggers here: the change counter is its own)."""
        before = self._db.total_changes
        await self._db.execute_fetchall(self._queries[query], _bound(params))
        return self._db.total_changes - before

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None:
        await self._db.executemany(self._queries[query], [_bound(row) for row in rows])

    async def one(self, query: str, params: Params | None = None) -> Row | None:
        rows = await self.all(query, params)
        return rows[0] if rows else None

    async def all(self, query: str, params: Params | None = None) -> list[Row]:
        return list(await self._db.execute_fetchall(self._queries[query], _bound(params)))

    async def notify(self, payload: str = "") -> None:
        """SQLite cannot notify: other processes on the file find work by polling."""

    async def lock(self, key: int) -> None:
        """Every write transaction is BEGIN IMMEDIATE: they already take turns."""

    async def try_lock(self, key: int) -> bool:
        return True


def _bound(params: Params | None) -> dict[str, object]:
    """The parameters, with `now` read as the statement runs (the lock is held by then)."""
    return {**(params or {}), "now": time.time()}


class SQLiteConnector:
    """One SQLite file; one connection shared by every coroutine of the process."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._queries = load_queries(self.dialect)
        # Statements take turns, and a transaction holds the lock throughout, so one
        # coroutine's statements never land in another's transaction.
        self._turns = _TakingTurns()

    @property
    def db(self) -> aiosqlite.Connection:
        return opened(self._db)

    async def open(self) -> None:
        if self.path != ":memory:":
            await asyncio.to_thread(Path(self.path).parent.mkdir, parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = aiosqlite.Row
        for pragma in ("busy_timeout=10000", "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            await self._pragma(pragma)
        await self._migrate()

    async def _pragma(self, pragma: str) -> None:
        """A PRAGMA, its answer read to the end: a statement left open holds a read lock, and
        SQLite then refuses this connection's next write at once instead of waiting its turn.

        Switching a new database to WAL needs it to itself, and SQLite answers "locked" at once,
        without waiting `busy_timeout`, while another process migrates it: asked again a moment later."""
        for attempt in range(PRAGMA_ATTEMPTS):
            try:
                async with self.db.execute(f"PRAGMA {pragma}") as cursor:
                    await cursor.fetchall()
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == PRAGMA_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(PRAGMA_RETRY_SECONDS)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def schema_version(self) -> int:
        async with self._turns.held(), self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        """Apply what is missing, inside one write transaction: processes starting together
        take turns, and the second finds the work done."""
        async with self.transaction():
            async with self.db.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
            version = int(row[0]) if row else 0
            for number, script in migrations(self.dialect):
                if number > version:
                    for statement in _statements(script):
                        await self.db.execute(statement)
                    await self.db.execute(f"PRAGMA user_version = {number}")

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False, urgent: bool = False) -> AsyncIterator[Connection]:
        """BEGIN ... COMMIT; any failure, the COMMIT's own included, rolls back, so the
        connection is never left inside a transaction.

        A cancellation may land while BEGIN (or COMMIT) still waits in aiosqlite's thread, which
        runs statements in order: the ROLLBACK is queued behind it whatever happens here."""
        async with self._turns.held(urgent=urgent):
            try:
                await self.db.execute_fetchall("BEGIN" if readonly else "BEGIN IMMEDIATE")
                yield _Statements(self.db, self._queries)
                await self.db.execute_fetchall("COMMIT")
            except BaseException:
                with suppress(sqlite3.OperationalError):  # no transaction was open
                    await asyncio.shield(self.db.execute_fetchall("ROLLBACK"))
                raise

    async def _alone(self, run: Callable[[_Statements], Awaitable[T]]) -> T:
        async with self._turns.held():
            return await run(_Statements(self.db, self._queries))

    async def execute(self, query: str, params: Params | None = None) -> int:
        return await self._alone(lambda s: s.execute(query, params))

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None:
        async with self.transaction() as connection:
            await connection.execute_many(query, rows)

    async def one(self, query: str, params: Params | None = None) -> Row | None:
        return await self._alone(lambda s: s.one(query, params))

    async def all(self, query: str, params: Params | None = None) -> list[Row]:
        return await self._alone(lambda s: s.all(query, params))

    async def notify(self, payload: str = "") -> None:
        """Nothing to wake: see `_Statements.notify`."""

    async def lock(self, key: int) -> None:
        """Nothing to take: see `_Statements.lock`."""

    async def try_lock(self, key: int) -> bool:
        return True

    async def listen(self, wake: Callable[[str], None]) -> None:
        """SQLite has no notifications: other processes on the file are found by polling."""


class SQLiteStore(Store):
    """The store on one SQLite file (the default: nothing to set up)."""

    connector: SQLiteConnector

    def __init__(self, path: str) -> None:
        super().__init__(SQLiteConnector(path))

    @property
    def db(self) -> aiosqlite.Connection:
        """The connection itself, for a look the store has no method for (the tests' PRAGMAs)."""
        return self.connector.db


def _statements(script: str) -> list[str]:
    """A migration file's statements (`;` at the end of a line ends one; no triggers here)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";\n") if statement.strip().strip(";")]
