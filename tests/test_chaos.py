"""A short chaos run (see `tests/chaos.py`; `bench/chaos.py` is the long one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import ChaosPlan, chaos_run
from tests.postgres_server import PostgresUnavailable, running_postgres


async def test_kills_deploys_a_database_restart_and_api_faults_lose_and_double_nothing(tmp_path: Path) -> None:
    try:
        server_context = running_postgres()
        server = server_context.__enter__()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    try:
        report = await chaos_run(server, tmp_path, ChaosPlan(threads=12, messages_per_thread=3, kills=1, stops=1, timeout=480))
    finally:
        server_context.__exit__(None, None, None)
    assert report.problems == []
    assert sum(report.injected.values()) > 0  # faults were injected, and survived
