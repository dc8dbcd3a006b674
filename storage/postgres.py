"""The PostgreSQL connector, through asyncpg: a connection pool, JSON as jsonb, times as timestamptz.

Any number of processes share one database. `NOTIFY threadbox_queue` wakes the others when
work is queued or handed back (a slow poll covers a lost notification), and advisory locks
make them take turns where a check and a write must not interleave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from .connector import PARAMETER, Connection, Params, Row, load_queries, migrations, opened

logger = logging.getLogger(__name__)

CHANNEL = "threadbox_queue"
# Any constant: every process takes this advisory lock to migrate, one after the other.
MIGRATION_LOCK = 0x7468726561640001
LISTEN_RETRY_SECONDS = 2.0
# The pool's defaults: connections one process keeps at most, and the longest a call waits for one.
POOL_SIZE = 10
ACQUIRE_SECONDS = 5.0


class _Query:
    """A named query with its `:name` parameters turned into asyncpg's `$1, $2, …`."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []

        def number(match: Any) -> str:
            name = match.group(1)
            if name not in self.names:
                self.names.append(name)
            return f"${self.names.index(name) + 1}"

        self.sql = PARAMETER.sub(number, sql)

    def args(self, params: Params | None) -> list[Any]:
        given = params or {}
        return [given[name] for name in self.names]


class _Statements:
    """Named queries on one pooled connection (inside a transaction, or a single statement)."""

    def __init__(self, connection: asyncpg.Connection, queries: dict[str, _Query]) -> None:
        self._connection = connection
        self._queries = queries

    async def execute(self, query: str, params: Params | None = None) -> int:
        compiled = self._queries[query]
        status = await self._connection.execute(compiled.sql, *compiled.args(params))
        last = str(status).rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None:
        compiled = self._queries[query]
        await self._connection.executemany(compiled.sql, [compiled.args(row) for row in rows])

    async def one(self, query: str, params: Params | None = None) -> Row | None:
        compiled = self._queries[query]
        row: Row | None = await self._connection.fetchrow(compiled.sql, *compiled.args(params))
        return row

    async def all(self, query: str, params: Params | None = None) -> list[Row]:
        compiled = self._queries[query]
        return list(await self._connection.fetch(compiled.sql, *compiled.args(params)))

    async def notify(self, payload: str = "") -> None:
        await self._connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def lock(self, key: int) -> None:
        await self._connection.execute("SELECT pg_advisory_xact_lock($1)", key)

    async def try_lock(self, key: int) -> bool:
        return bool(await self._connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", key))


class PostgresConnector:
    """One PostgreSQL database, shared by every process pointed at it."""

    dialect = "postgres"

    def __init__(self, dsn: str, *, max_size: int = POOL_SIZE, acquire_seconds: float = ACQUIRE_SECONDS) -> None:
        self.dsn = dsn
        self._max_size = max(1, max_size)
        self._acquire_seconds = acquire_seconds
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncio.Task[None] | None = None
        self._queries = {name: _Query(sql) for name, sql in load_queries(self.dialect).items()}

    @property
    def pool(self) -> asyncpg.Pool:
        return opened(self._pool)

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self._max_size)
        await self._migrate()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait({self._listener}, timeout=5)
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _acquire(self) -> Any:
        """A pooled connection, waited for at most `acquire_seconds` (then `TimeoutError`)."""
        return self.pool.acquire(timeout=self._acquire_seconds)

    async def schema_version(self) -> int:
        return int(await self.pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    async def _migrate(self) -> None:
        async with self._acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = await connection.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            for number, script in migrations(self.dialect):
                if number > version:
                    await connection.execute(script)
                    await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", number)

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False, urgent: bool = False) -> AsyncIterator[Connection]:
        """A pooled connection in a transaction; `readonly` ones see one snapshot throughout.
        Connections do not take turns here: `urgent` changes nothing."""
        isolation = "repeatable_read" if readonly else None
        async with self._acquire() as connection, connection.transaction(isolation=isolation, readonly=readonly):
            yield _Statements(connection, self._queries)

    async def execute(self, query: str, params: Params | None = None) -> int:
        async with self._acquire() as connection:
            return await _Statements(connection, self._queries).execute(query, params)

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None:
        async with self._acquire() as connection:
            await _Statements(connection, self._queries).execute_many(query, rows)

    async def one(self, query: str, params: Params | None = None) -> Row | None:
        async with self._acquire() as connection:
            return await _Statements(connection, self._queries).one(query, params)

    async def all(self, query: str, params: Params | None = None) -> list[Row]:
        async with self._acquire() as connection:
            return await _Statements(connection, self._queries).all(query, params)

    async def notify(self, payload: str = "") -> None:
        await self.pool.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def lock(self, key: int) -> None:
        """Outside a transaction an advisory lock would end at once: take it in `transaction`."""
        raise RuntimeError("take an advisory lock inside a transaction")

    async def try_lock(self, key: int) -> bool:
        raise RuntimeError("take an advisory lock inside a transaction")

    async def listen(self, wake: Callable[[str], None]) -> None:
        """Keep one connection listening for the whole life of the store, reconnecting as needed."""
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen_forever(wake, ready))
        await asyncio.wait_for(ready.wait(), timeout=30)

    async def _listen_forever(self, wake: Callable[[str], None], ready: asyncio.Event) -> None:
        while True:
            try:
                connection = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as error:
                logger.warning("cannot listen for queue notifications (%s); retrying", error)
                ready.set()
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
            try:
                await connection.add_listener(CHANNEL, lambda _c, _pid, _channel, payload: wake(payload))
                ready.set()
                wake("")  # whatever was queued while nobody listened: look at everything
                await lost.wait()
                logger.warning("queue notifications lost; reconnecting")
            except (OSError, asyncpg.PostgresError) as error:
                logger.warning("queue notifications failed (%s); reconnecting", error)
            finally:
                if not connection.is_closed():
                    await connection.close()
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

