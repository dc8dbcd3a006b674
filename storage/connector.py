"""The `Connector` protocol: what the store asks of a database driver, and nothing more.

One implementation per driver (`sqlite.py`, `postgres.py`). The store calls queries by name;
each dialect keeps its SQL in `queries/<dialect>.sql` (and SQL that is the same in every dialect
in `queries/common.sql`, written once), with `:name` parameters. A query
takes the parameters it names, so a caller may pass more. Times come from the database side
as each statement runs (PostgreSQL's `clock_timestamp()`; for SQLite, which keeps epoch seconds,
the connector binds `:now`), so a lease never starts before the lock that grants it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from importlib import resources
from typing import Any, Protocol, TypeVar

Params = Mapping[str, Any]
T = TypeVar("T")


class Row(Protocol):
    """A result row: by position, by slice, and by column name (both drivers' rows allow each)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

_QUERY_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# `:name`, but not the `::type` of a PostgreSQL cast.
PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)\b")


class Connection(Protocol):
    """Runs named queries: alone (each its own transaction) or inside `Connector.transaction`."""

    async def execute(self, query: str, params: Params | None = None) -> int:
        """Run a statement; the number of rows it changed."""

    async def execute_many(self, query: str, rows: Sequence[Params]) -> None: ...

    async def one(self, query: str, params: Params | None = None) -> Row | None: ...

    async def all(self, query: str, params: Params | None = None) -> list[Row]: ...

    async def notify(self, payload: str = "") -> None:
        """Tell the other processes' `listen` (at commit, where the driver can) what changed."""

    async def lock(self, key: int) -> None:
        """Hold an advisory lock until this transaction ends: callers of one key take turns."""

    async def try_lock(self, key: int) -> bool:
        """`lock` without waiting: False when another transaction holds it."""


class Connector(Connection, Protocol):
    """One database: opened and migrated once, closed once."""

    dialect: str

    async def open(self) -> None:
        """Connect, and apply the migrations this release has and the database lacks."""

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    def transaction(self, *, readonly: bool = False, urgent: bool = False) -> AbstractAsyncContextManager[Connection]:
        """All or nothing: any failure, COMMIT's own included, rolls back. `urgent`: Slack waits
        for it (the listeners' writes), so where callers take turns it goes before the others."""

    async def listen(self, wake: Callable[[str], None]) -> None:
        """Call `wake` with the payload whenever another process `notify`s (a no-op where the
        driver cannot)."""


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit number, the same in every process) of `name`."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def opened(handle: T | None) -> T:
    """A driver's connection or pool, once `open` has made it."""
    if handle is None:
        raise RuntimeError("store is not open")
    return handle


def load_queries(dialect: str) -> dict[str, str]:
    """The named queries of `queries/common.sql` (the same SQL in every dialect) and of
    `queries/<dialect>.sql`: `-- name: x` starts query `x`, defined once across both."""
    queries: dict[str, str] = {}
    for file in ("common", dialect):
        text = resources.files("storage").joinpath("queries", f"{file}.sql").read_text(encoding="utf-8")
        parts = _QUERY_NAME.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
            if name in queries:
                raise RuntimeError(f"{dialect} query {name!r} is defined twice")
            queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def migrations(backend: str) -> list[tuple[int, str]]:
    """The numbered SQL migration files of a backend, in order: [(number, script)]."""
    folder = resources.files("storage").joinpath("migrations", backend)
    scripts = sorted(
        (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    numbers = [number for number, _ in scripts]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {numbers}")
    return scripts
