"""The real bot (HTTP mode) on loopback fakes, for benchmarks: the same assembly the tests use."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import load_settings  # noqa: E402
from tests.conftest import SIGNING_SECRET, BotServer, wait_for  # noqa: E402
from tests.fakes import FakeAnthropic, FakeSlack, mention_event, message_event  # noqa: E402

CHANNEL = "C1"


@dataclass
class Bench:
    bot: BotServer
    slack: FakeSlack
    claude: FakeAnthropic

    async def say(self, root: str, n: int, words: str, *, user: str = "U1") -> None:
        """Send message `n` of the thread at `root` and wait until it is answered."""
        ts = f"{root.split('.')[0]}.{n + 1:06d}"
        event = (
            mention_event(words, channel=CHANNEL, user=user, ts=root)
            if n == 0
            else message_event(words, channel=CHANNEL, user=user, ts=ts, thread_ts=root)
        )
        asked = len(self.claude.requests)
        await self.bot.send_event(event)
        await wait_for(lambda: len(self.claude.requests) > asked, timeout=120)
        await self.bot.idle(quiet=0.05)


@asynccontextmanager
async def bench(**settings: Any) -> AsyncIterator[Bench]:
    """Fakes and a bot on a fresh database; `settings` override fields of `Settings`."""
    slack, claude = FakeSlack(), FakeAnthropic()
    await slack.start()
    await claude.start()
    os.environ["ANTHROPIC_BASE_URL"] = claude.base_url
    with tempfile.TemporaryDirectory() as tmp:
        base = load_settings(
            {
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": slack.base_url,
                "ANTHROPIC_API_KEY": claude.api_key,
                "DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "PORT": "3000",  # unused: the bench serves the app on a port of its own
            }
        )
        server = BotServer(replace(base, **settings), slack)
        await server.start()
        try:
            yield Bench(server, slack, claude)
        finally:
            await server.stop()
            await slack.stop()
            await claude.stop()
