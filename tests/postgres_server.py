"""A real PostgreSQL server for the tests: initdb in a temporary directory, loopback, trust auth.

The server refuses to run as root, so as root it runs as the `postgres` user. Without a server
the PostgreSQL tests skip locally, and fail under CI (`CI=true`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg


def _binary(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or the server did not start."""


class PostgresServer:
    """A running throwaway server: its DSN, and a restart (as after a crash: `immediate`)."""

    def __init__(self, dsn: str, pg_ctl: str, data: Path, log: Path, options: str) -> None:
        self.dsn, self._pg_ctl, self._data, self._log, self._options = dsn, pg_ctl, data, log, options

    def stop(self) -> None:
        subprocess.run(
            _as_server_user([self._pg_ctl, "-D", str(self._data), "-m", "immediate", "-w", "stop"]), capture_output=True
        )

    def start(self) -> None:
        subprocess.run(
            _as_server_user([self._pg_ctl, "-D", str(self._data), "-l", str(self._log), "-o", self._options,
                             "-w", "-t", "60", "start"]),
            check=True, capture_output=True, text=True,
        )


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway server; yields the DSN of its `postgres` database."""
    with running_postgres() as server:
        yield server.dsn


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server; yields it."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="threadbox-pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        uid, gid = pwd.getpwnam("postgres")[2:4]
        os.chown(root, uid, gid)
    port = _free_port()
    try:
        subprocess.run(
            _as_server_user([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, text=True,
        )
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        server = PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", pg_ctl, data, log, options)
        server.start()
    except (subprocess.CalledProcessError, KeyError, OSError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"PostgreSQL did not start: {detail.strip()}") from error
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def new_database(dsn: str, name: str) -> str:
    """A new, empty database on the server of `dsn`; its URL."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return dsn.rsplit("/", 1)[0] + f"/{name}"
