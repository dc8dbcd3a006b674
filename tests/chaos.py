"""A chaos run: bot processes on one PostgreSQL database answer many threads while processes
are killed (`kill -9`) and stopped (`SIGTERM`) and started again, the database restarts, and
the fakes answer rate limits, server errors, overloads and cut streams at random.

Shared by `bench/chaos.py` (the long run) and `tests/test_chaos.py` (a short one). What must hold
at the end (`ChaosReport.problems` lists what did not): every message answered exactly once and
in its thread's order, no reply left streaming or empty, no Files API file that no thread
knows, and each process's memory flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.conftest import SIGNING_SECRET, wait_for
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.faults import Faults
from tests.fakes.slack_api import mention_event, message_event
from tests.postgres_server import PostgresServer, new_database
from tests.processes import HttpBot, bot_process, bot_process_env, free_port

ASKED = re.compile(r"job (m\d+-\d+)")
INTERRUPTED = "This answer was interrupted"
FAILED = ("went wrong", "overloaded", "could not")


@dataclass(frozen=True)
class ChaosPlan:
    threads: int = 40
    messages_per_thread: int = 5
    processes: int = 3
    kills: int = 2
    """`kill -9` of a process, each started again a moment later."""
    stops: int = 2
    """`SIGTERM` of a process (a deploy), each started again."""
    restart_database: bool = True
    fault_rate: float = 0.1
    seed: int = 1
    files_every: int = 7
    """Every so many messages shares a file (its Files API copy must be known to its thread)."""
    channels: int = 20
    """Threads spread over this many channels (Slack posts about one message a second in each)."""
    timeout: float = 300.0


@dataclass
class ChaosReport:
    messages: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    injected: dict[str, int] = field(default_factory=dict)
    interrupted_replies: int = 0
    memory_mb: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per process lifetime that lasted the run: (resident MB after its first turns, at the end)."""


class Fleet:
    """The bot processes, each in a slot that can be killed, stopped and started again."""

    def __init__(self, env: dict[str, str], work: Path, session: aiohttp.ClientSession) -> None:
        self.env, self.work, self.session = env, work, session
        self.bots: list[HttpBot | None] = []
        self._stacks: list[AsyncExitStack] = []
        self.memory: dict[int, list[float]] = {}

    async def start(self, slot: int | None = None) -> None:
        port = free_port()
        stack = AsyncExitStack()
        process = await stack.enter_async_context(
            bot_process({**self.env, "PORT": str(port), "SLACK_SIGNING_SECRET": SIGNING_SECRET}, self.work)
        )
        bot = HttpBot(process, port, self.session)
        await bot.ready()
        if slot is None:
            self.bots.append(bot)
            self._stacks.append(stack)
        else:
            self.bots[slot], self._stacks[slot] = bot, stack
        self.memory[process.pid] = []

    async def end(self, slot: int, how: signal.Signals) -> None:
        bot = self.bots[slot]
        assert bot is not None
        self.bots[slot] = None
        if how == signal.SIGKILL:
            os.kill(bot.process.pid, signal.SIGKILL)
        await self._stacks[slot].aclose()  # SIGTERM, and waits for a clean exit (asserted)

    def live(self) -> list[HttpBot]:
        return [bot for bot in self.bots if bot is not None]

    def sample_memory(self) -> None:
        for bot in self.live():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{bot.process.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.memory[bot.process.pid].append(int(line.split()[1]) / 1024)

    async def close(self) -> None:
        for stack in reversed(self._stacks):
            await stack.aclose()



def asked_token(body: dict[str, Any]) -> str:
    """Which message a model request answers: the `job m…` of its last user turn."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    found = ASKED.findall(json.dumps(users[-1]["content"])) if users else []
    return found[-1] if found else "?"


async def deliver(fleet: Fleet, rng: random.Random, event: dict[str, Any], event_id: str, deadline: float) -> None:
    """As Slack delivers an event: to a process that is up, again (a retry) until one answers 200."""
    attempt = 0
    while time.monotonic() < deadline:
        live = fleet.live()
        if live:
            try:
                status = await asyncio.wait_for(
                    rng.choice(live).send_event(event, event_id=event_id, retry_num=attempt or None), 3.0
                )
                if status == 200:
                    return
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
        attempt += 1
        await asyncio.sleep(0.5)
    raise AssertionError(f"event {event_id} was never acknowledged")


@asynccontextmanager
async def fakes(plan: ChaosPlan) -> AsyncIterator[tuple[FakeSlack, FakeAnthropic]]:
    slack, claude = FakeSlack(), FakeAnthropic()
    rng = random.Random(plan.seed)

    def answer(body: dict[str, Any]) -> Reply:
        token = asked_token(body)
        return Reply([text(f"answer to {token}")], delay=rng.uniform(0.1, 0.8), chunk_delay=0.05)

    claude.responder = answer
    claude.faults = Faults(plan.fault_rate, seed=plan.seed)
    slack.faults = Faults(plan.fault_rate / 2, seed=plan.seed + 1)
    await slack.start()
    await claude.start()
    try:
        yield slack, claude
    finally:
        await slack.stop()
        await claude.stop()


async def chaos_run(server: PostgresServer, work: Path, plan: ChaosPlan) -> ChaosReport:
    report = ChaosReport(messages=plan.threads * plan.messages_per_thread)
    rng = random.Random(plan.seed)
    async with fakes(plan) as (slack, claude), aiohttp.ClientSession() as session:
        url = await new_database(server.dsn, f"chaos_{plan.seed}_{int(time.time() * 1000)}")
        env = bot_process_env(work, slack, claude, DATABASE_URL=url, LOG_LEVEL="WARNING", QUEUE_LEASE_SECONDS="4",
                              SHUTDOWN_GRACE_SECONDS="3")
        fleet = Fleet(env, work, session)
        try:
            for _ in range(plan.processes):
                await fleet.start()
            started = time.monotonic()
            deadline = started + plan.timeout
            roots = {n: f"17100{n:05d}.000100" for n in range(plan.threads)}

            async def one_thread(n: int) -> None:
                root = roots[n]
                for k in range(plan.messages_per_thread):
                    words = f"job m{n}-{k}"
                    files = [slack.add_user_file(f"data-{n}-{k}.csv", b"a,b\n1,2\n")] if (n + k) % plan.files_every == 0 else None
                    ts = root if k == 0 else f"17100{n:05d}.{k + 1:06d}"
                    event = (
                        mention_event(words, channel=f"C{n % plan.channels}", user=f"U{n % 11}", ts=root, files=files)
                        if k == 0
                        else message_event(words, channel=f"C{n % plan.channels}", user=f"U{n % 11}", ts=ts, thread_ts=root,
                                           files=files)
                    )
                    await deliver(fleet, rng, event, f"Ev{n:05d}{k:03d}", deadline)
                    await asyncio.sleep(rng.uniform(0.2, 1.5))

            async def havoc() -> None:
                actions = [signal.SIGKILL] * plan.kills + [signal.SIGTERM] * plan.stops
                rng.shuffle(actions)
                steps: list[str | signal.Signals] = list(actions)
                if plan.restart_database:
                    steps.insert(len(steps) // 2, "database")
                for step in steps:
                    await asyncio.sleep(rng.uniform(2.0, 4.0))
                    if step == "database":
                        await asyncio.to_thread(server.stop)
                        await asyncio.sleep(1.5)
                        await asyncio.to_thread(server.start)
                        continue
                    assert isinstance(step, signal.Signals)
                    slot = rng.randrange(len(fleet.bots))
                    if fleet.bots[slot] is None:
                        continue
                    await fleet.end(slot, step)
                    await asyncio.sleep(rng.uniform(0.5, 2.0))
                    await fleet.start(slot)

            async def watch_memory() -> None:
                while True:
                    fleet.sample_memory()
                    await asyncio.sleep(0.5)

            watcher = asyncio.create_task(watch_memory())
            await asyncio.gather(*(one_thread(n) for n in range(plan.threads)), havoc())
            expected = {roots[n]: [f"m{n}-{k}" for k in range(plan.messages_per_thread)] for n in range(plan.threads)}
            channels = {roots[n]: f"C{n % plan.channels}" for n in range(plan.threads)}

            def answers(root: str) -> list[str]:
                found = []
                for msg in slack.thread(channels[root], root):
                    shown = slack.rendered_text(msg)
                    if msg.get("bot_id") and INTERRUPTED not in shown:
                        found += re.findall(r"answer to (m\d+-\d+)", shown)
                return found

            with contextlib.suppress(AssertionError):  # what is missing is reported below
                await wait_for(lambda: all(answers(r) == e for r, e in expected.items()),
                               timeout=max(1.0, deadline - time.monotonic()))
            await asyncio.sleep(2.0)  # anything still to come (a duplicate) has time to show
            report.seconds = time.monotonic() - started
            watcher.cancel()
            for root, wanted in expected.items():
                got = answers(root)
                if got != wanted:
                    rows = await queue_rows(url, root)
                    report.problems.append(f"thread {root}: answers {got}, expected {wanted}; queue: {rows}")
            for msg in slack.streaming_messages():
                report.problems.append(f"left streaming: {msg.get('ts')} {slack.rendered_text(msg)[:60]!r}")
            for root in expected:
                for msg in slack.thread(channels[root], root):
                    shown = slack.rendered_text(msg)
                    if msg.get("bot_id") and not shown.strip():
                        report.problems.append(f"empty reply in {root}: {msg.get('ts')}")
                    if msg.get("bot_id") and any(word in shown for word in FAILED):
                        report.problems.append(f"failure shown in {root}: {shown[:80]!r}")
                    report.interrupted_replies += int(bool(msg.get("bot_id")) and INTERRUPTED in shown)
            report.problems += await orphaned_files(url, claude)
            for pid, samples in fleet.memory.items():
                if len(samples) > 20 and any(bot.process.pid == pid for bot in fleet.live()):
                    settled, last = samples[len(samples) // 4], samples[-1]
                    report.memory_mb[str(pid)] = (settled, last)
                    if last - settled > 40:
                        report.problems.append(f"process {pid} grew from {settled:.0f} MB to {last:.0f} MB")
            report.injected = dict(claude.faults.injected if claude.faults else {})
            report.injected.update({f"slack {k}": v for k, v in (slack.faults.injected if slack.faults else {}).items()})
        finally:
            await fleet.close()
    return report


async def queue_rows(url: str, thread_ts: str) -> list[tuple[Any, ...]]:
    """A thread's queue rows and claim, to say why a thread is not answered as it should be."""
    connection = await asyncpg.connect(url)
    try:
        items = await connection.fetch(
            "SELECT id, message_ts, state, attempts, answered, addressed FROM queue WHERE thread_ts = $1 ORDER BY id",
            thread_ts,
        )
        claims = await connection.fetch("SELECT head_id, owner, lease_until FROM claims WHERE thread_ts = $1", thread_ts)
    finally:
        await connection.close()
    return [tuple(row) for row in [*items, *claims]]


async def orphaned_files(url: str, claude: FakeAnthropic) -> list[str]:
    """Files API files that no thread's history names (each shared file's copy is referenced by
    the turn that used it; a copy made by an attempt that died must have been deleted)."""
    connection = await asyncpg.connect(url)
    try:
        history = " ".join(str(row[0]) for row in await connection.fetch("SELECT content FROM history"))
        # Copies noted on their message: used by its next attempt, or deleted by housekeeping.
        noted = " ".join(str(row[0]) for row in await connection.fetch("SELECT uploads FROM queue"))
    finally:
        await connection.close()
    return [f"orphaned Files API file {file_id}" for file_id in claude.files if file_id not in history + noted]
