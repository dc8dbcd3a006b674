"""Runs the real bot (HTTP mode) against loopback fakes of Slack and Anthropic."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.app import Runtime
from bot.config import Settings, load_settings
from bot.http import RUNTIME_KEY, build_web_app
from bot.outbound import pacing
from bot.tasks import stop_tasks
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import (
    block_action_body,
    command_body,
    event_body,
    mention_event,
    shortcut_body,
    sign,
)
from tests.postgres_server import PostgresUnavailable, postgres_server

SIGNING_SECRET = "test-signing-secret"


def thread_text(slack: FakeSlack, channel: str, thread_ts: str) -> str:
    """Everything a person sees in a thread, one message a line."""
    return "\n".join(slack.thread_texts(channel, thread_ts))


def container_of(request: dict[str, Any]) -> str | None:
    """The container a Messages request names: `container` is its id, or an object with its
    `id` and the thread's skills."""
    container = request.get("container")
    return container.get("id") if isinstance(container, dict) else container


def said_by(user_id: str, text: str) -> str:
    """A channel message as Claude receives it: the author's display name (the fake Slack's
    is the lowercased id), then the text."""
    return f"{user_id.lower()}: {text}"


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll until `predicate()` holds; listeners run after the ack, so tests wait for effects."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class BotServer:
    """The bot's aiohttp app on a loopback port, plus helpers that speak to it as Slack does."""

    def __init__(self, settings: Settings, slack: FakeSlack) -> None:
        self.settings = settings
        self.slack = slack
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    @property
    def runtime(self) -> Runtime:
        assert self._runner is not None
        return self._runner.app[RUNTIME_KEY]

    async def start(self) -> None:
        self._runner = web.AppRunner(build_web_app(self.settings))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._session = None

    async def kill(self) -> None:
        """Die as a process does: running turns end where they are and nothing is handed back;
        its leases are gone (as once they run out), so the next process takes over at once."""
        engine = self.runtime.engine
        await stop_tasks([*engine._loops, *engine._threads.values()])
        await run_sql(self.settings.database_url, "UPDATE claims SET owner = NULL, lease_until = NULL, admitted_user = NULL")
        await self.stop()

    async def post(
        self, body: str, content_type: str, *, signed: bool = True, extra_headers: dict[str, str] | None = None,
        timestamp: int | None = None, secret: str = SIGNING_SECRET,
    ) -> tuple[int, str]:
        headers = sign(secret, body, timestamp) if signed else {}
        headers["Content-Type"] = content_type
        headers.update(extra_headers or {})
        assert self._session is not None
        async with self._session.post(f"{self.url}/slack/events", data=body.encode(), headers=headers) as response:
            return response.status, await response.text()

    async def send_event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None) -> int:
        body = event_body(event, event_id=event_id)
        extra = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        status, _ = await self.post(body, "application/json", extra_headers=extra)
        return status

    async def send_command(self, text: str = "", *, command: str = "/reset", **kwargs: Any) -> int:
        kwargs.setdefault("response_url", self.slack.new_response_url())
        status, _ = await self.post(command_body(command, text, **kwargs), "application/x-www-form-urlencoded")
        return status

    async def send_shortcut(self, message: dict[str, Any], *, callback_id: str = "reset_container", **kwargs: Any) -> int:
        kwargs.setdefault("response_url", self.slack.new_response_url())
        body = shortcut_body(callback_id, message=message, **kwargs)
        status, _ = await self.post(body, "application/x-www-form-urlencoded")
        return status

    async def send_action(self, action_id: str, value: str, **kwargs: Any) -> int:
        kwargs.setdefault("response_url", self.slack.new_response_url())
        body = block_action_body(action_id, value, **kwargs)
        status, _ = await self.post(body, "application/x-www-form-urlencoded")
        return status

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        await wait_for(predicate, timeout)

    async def mention_and_wait(
        self, claude_api: FakeAnthropic, answer: Reply, text: str, *, root: str, shows: str,
        channel: str = "C1", user: str = "U1",
    ) -> None:
        """Start a thread with a mention whose model answer is `answer`; return once the thread shows `shows`."""
        claude_api.enqueue(answer)
        await self.send_event(mention_event(text, channel=channel, user=user, ts=root))
        await self.wait_for(lambda: shows in thread_text(self.slack, channel, root))

    async def idle(self, quiet: float = 0.3) -> None:
        """Wait until no turn runs and Slack saw no new call for `quiet` seconds."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            calls = len(self.slack.calls)
            await self.runtime.engine.drain()
            await asyncio.sleep(quiet)
            if calls == len(self.slack.calls) and not self.runtime.engine.busy:
                return
        raise AssertionError("the bot never went idle")


# Slack counts its rate tiers over a minute; the tests' Slack, and the bot they drive, over this.
TEST_MINUTE_SECONDS = 3.0


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    fake.rate_tiers.window = TEST_MINUTE_SECONDS
    monkeypatch.setattr(pacing, "MINUTE_SECONDS", TEST_MINUTE_SECONDS)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def claude_api() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def settings(tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude_api.base_url)
    return load_settings(
        {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.base_url,
            "ANTHROPIC_API_KEY": claude_api.api_key,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'threadbox.db'}",
            "PORT": "3000",  # unused: the tests serve the app on a port of their own
        }
    )


@asynccontextmanager
async def running_bot(settings: Settings, slack: FakeSlack) -> AsyncIterator[BotServer]:
    """A bot started on `settings` (a restart, when the database is the one used before)."""
    server = BotServer(settings, slack)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def bot(settings: Settings, slack: FakeSlack) -> AsyncIterator[BotServer]:
    async with running_bot(settings, slack) as server:
        yield server


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL server for the whole run; under CI its absence fails the tests."""
    try:
        with postgres_server() as dsn:
            yield dsn
    except PostgresUnavailable as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI: {error}")
        pytest.skip(str(error))


@pytest.fixture
def postgres_url(postgres_dsn: str) -> str:
    """A new, empty database on the test server."""
    name = f"threadbox_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        connection = await asyncpg.connect(postgres_dsn)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    # Fixtures may be set up while a test's event loop runs: create it on a loop of its own.
    with ThreadPoolExecutor(1) as executor:
        executor.submit(asyncio.run, create()).result()
    return postgres_dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: a test taking this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'threadbox.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def settings_on_each_store(settings: Settings, database_url: str) -> Settings:
    """The test bot's settings on SQLite, then on PostgreSQL."""
    return replace(settings, database_url=database_url)


async def run_sql(database_url: str, script: str) -> None:
    """Change a bot's database behind its back (to make it fail, and mend it)."""
    if database_url.startswith("sqlite:"):
        path = database_url[len("sqlite:///") :]

        def run() -> None:
            with sqlite3.connect(path) as connection:
                connection.executescript(script)

        await asyncio.to_thread(run)
        return
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(script)
    finally:
        await connection.close()


def long_running_reply(words: str) -> Reply:
    """An answer whose first words show at once and whose end comes many seconds later."""
    return Reply([text(f"{words} " * 120), text("…and the end of it")], chunk_delay=1.0)
