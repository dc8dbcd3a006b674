"""Real `python -m bot` processes (as the Procfile runs them) against the loopback fakes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import SIGNING_SECRET, wait_for
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.slack_api import event_body, shortcut_body, sign

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bot_process_env(tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_"))}
    env.update(
        PYTHONPATH=str(ROOT), SLACK_BOT_TOKEN=slack.bot_token, SLACK_API_URL=slack.base_url,
        ANTHROPIC_API_KEY=claude_api.api_key, ANTHROPIC_BASE_URL=claude_api.base_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
    )
    env.update(extra)
    return env


@asynccontextmanager
async def bot_process(env: dict[str, str], cwd: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot`; stopped with SIGTERM, which must end it cleanly (unless it was killed).

    Its log goes to a file beside the test (`bot-<pid>.log`), shown when it ends badly.
    """
    log_path = cwd / f"bot-{uuid.uuid4().hex[:8]}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 40)
    log_text = log_path.read_text(errors="replace")
    assert process.returncode in (0, -signal.SIGKILL), log_text
    assert "Traceback" not in log_text or process.returncode == -signal.SIGKILL, log_text


class HttpBot:
    """One HTTP-mode bot process, spoken to as Slack speaks to it."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, session: aiohttp.ClientSession) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self._session = session

    async def ready(self) -> None:
        async def healthy() -> bool:
            try:
                async with self._session.get(f"{self.url}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        deadline = asyncio.get_running_loop().time() + 60
        while not await healthy():
            if self.process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"bot process on {self.url} did not become healthy")
            await asyncio.sleep(0.1)

    async def post(self, body: str, content_type: str, extra: dict[str, str] | None = None) -> int:
        headers = {**sign(SIGNING_SECRET, body), "Content-Type": content_type, **(extra or {})}
        async with self._session.post(f"{self.url}/slack/events", data=body.encode(), headers=headers) as response:
            return response.status

    async def send_event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None) -> int:
        extra = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        return await self.post(event_body(event, event_id=event_id), "application/json", extra)

    async def send_shortcut(self, message: dict[str, Any], **kwargs: Any) -> int:
        return await self.post(shortcut_body("reset_container", message=message, **kwargs), "application/x-www-form-urlencoded")


@asynccontextmanager
async def http_bots(count: int, env: dict[str, str], cwd: Path) -> AsyncIterator[list[HttpBot]]:
    """`count` processes on one database, started at the same moment."""
    # Slack opens as many connections as it has events to send: no client-side limit.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        bots: list[HttpBot] = []
        managers = []
        try:
            for _ in range(count):
                port = free_port()
                manager = bot_process({**env, "PORT": str(port), "SLACK_SIGNING_SECRET": SIGNING_SECRET}, cwd)
                managers.append(manager)
                bots.append(HttpBot(await manager.__aenter__(), port, session))
            await asyncio.gather(*(bot.ready() for bot in bots))
            yield bots
        finally:
            for manager in reversed(managers):
                await manager.__aexit__(None, None, None)


__all__ = ["ROOT", "HttpBot", "bot_process", "bot_process_env", "free_port", "http_bots", "wait_for"]
