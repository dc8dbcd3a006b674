"""Throughput of the durable queue across processes, and takeover after kill -9 (PostgreSQL).

Run from the repository root:  python bench/queue_scaling.py [--threads 100] [--model-seconds 1]

Starts a throwaway PostgreSQL server (as the tests do), the loopback fakes of Slack and
Anthropic in this process, and real `python -m bot` processes in HTTP mode. Every thread is
one mention whose model answer takes `--model-seconds`. Reports the wall time until every
thread is answered, with one process and with two, and the time from `kill -9` of the
process running a turn until another process has taken it over (its model request) and
until the answer is in the thread, with the default lease.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from tests.conftest import long_running_reply, thread_text  # noqa: E402
from tests.fakes import FakeAnthropic, FakeSlack  # noqa: E402
from tests.fakes.anthropic_api import Reply, text  # noqa: E402
from tests.fakes.slack_api import mention_event  # noqa: E402
from tests.postgres_server import new_database, postgres_server  # noqa: E402
from tests.processes import bot_process_env, http_bots, wait_for  # noqa: E402

CHANNEL = "C1"


def answered(slack: FakeSlack, root: str) -> bool:
    return any("done" in m.get("text", "") and not m.get("streaming") for m in slack.thread(CHANNEL, root))


async def throughput(dsn: str, processes: int, threads: int, model_seconds: float, work: Path) -> dict[str, float]:
    slack, claude = FakeSlack(), FakeAnthropic()
    await slack.start()
    await claude.start()
    try:
        url = await new_database(dsn, f"bench_{processes}_{int(time.time())}")
        env = bot_process_env(work, slack, claude, DATABASE_URL=url, LOG_LEVEL="WARNING")
        async with http_bots(processes, env, work) as bots:
            claude.enqueue(*(Reply([text("done")], delay=model_seconds) for _ in range(threads)))
            roots = [f"17000{20000 + i}.000100" for i in range(threads)]
            started = time.monotonic()
            await asyncio.gather(
                *(
                    bots[i % processes].send_event(
                        mention_event(f"job {i}", channel=CHANNEL, user=f"U{1 + i % 50}", ts=root)
                    )
                    for i, root in enumerate(roots)
                )
            )
            await wait_for(lambda: all(answered(slack, r) for r in roots), timeout=600)
            elapsed = time.monotonic() - started
        return {"seconds": elapsed, "requests": len(claude.requests), "threads": threads}
    finally:
        await slack.stop()
        await claude.stop()


async def takeover(dsn: str, work: Path) -> dict[str, float]:
    slack, claude = FakeSlack(), FakeAnthropic()
    await slack.start()
    await claude.start()
    root = "1700030000.000100"
    try:
        url = await new_database(dsn, f"bench_takeover_{int(time.time())}")
        env = bot_process_env(work, slack, claude, DATABASE_URL=url, LOG_LEVEL="WARNING")
        async with http_bots(2, env, work) as bots:
            claude.enqueue(long_running_reply("long"), Reply([text("taken over")]))
            await bots[0].send_event(mention_event("long job", channel=CHANNEL, user="U1", ts=root))
            await wait_for(lambda: "long" in thread_text(slack, CHANNEL, root), timeout=60)
            connection = await asyncpg.connect(url)
            try:
                owner = await connection.fetchval("SELECT owner FROM claims WHERE owner IS NOT NULL")
            finally:
                await connection.close()
            killed = time.monotonic()
            os.kill(int(owner.split(":")[1]), signal.SIGKILL)
            await wait_for(lambda: len(claude.requests) == 2, timeout=60)
            requested = time.monotonic() - killed
            await wait_for(lambda: "taken over" in thread_text(slack, CHANNEL, root), timeout=60)
            answered_after = time.monotonic() - killed
        return {"model_request_after": requested, "answered_after": answered_after}
    finally:
        await slack.stop()
        await claude.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--model-seconds", type=float, default=1.0)
    args = parser.parse_args()
    with postgres_server() as dsn, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for processes in (1, 2):
            result = await throughput(dsn, processes, args.threads, args.model_seconds, work)
            print(
                f"{processes} process(es) x {args.threads} threads, model {args.model_seconds:g} s:"
                f" {result['seconds']:.1f} s ({result['threads'] / result['seconds']:.1f} turns/s),"
                f" {result['requests']} model requests"
            )
        result = await takeover(dsn, work)
        print(
            f"kill -9 -> model request on the other process: {result['model_request_after']:.1f} s;"
            f" -> answer in the thread: {result['answered_after']:.1f} s"
        )


if __name__ == "__main__":
    asyncio.run(main())
