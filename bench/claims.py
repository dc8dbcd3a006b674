"""Claim throughput on PostgreSQL: one to three processes, and a backlog of 1k against 100k.

Run from the repository root:  python bench/claims.py [--seconds 10]

Starts a throwaway PostgreSQL server (as the tests do) and seeds a backlog of waiting
messages, one per thread, from 500 people. Each worker is a process of its own doing what a
bot's dispatcher does, one claim after another, with the default caps (3 turns per person):
claim a thread, take its item, finish it, let the thread go. Reports claims a second with one,
two and three processes (each on a backlog of 10k), and the time of one claim with a backlog of
1k and of 100k waiting items.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from storage import Store, TurnLimits, open_store  # noqa: E402
from tests.postgres_server import new_database, postgres_server  # noqa: E402

DEFAULT_CAPS = TurnLimits(per_person=3)
SEED = """
INSERT INTO queue (team_id, channel_id, thread_ts, kind, message_ts, user_id, text, addressed, received_at)
SELECT 'T1', 'C1', 't' || g, 'message', 'm' || g, 'U' || (g % 500), 'job', true, now()
FROM generate_series(1, $1) AS g;
INSERT INTO claims (team_id, channel_id, thread_ts, head_id, head_user)
SELECT team_id, channel_id, thread_ts, id, user_id FROM queue WHERE state = 'pending'
ON CONFLICT DO NOTHING;
"""


async def seeded(dsn: str, name: str, backlog: int) -> str:
    url = await new_database(dsn, name)
    store = await open_store(url)  # the schema
    await store.close()
    connection = await asyncpg.connect(url)
    try:
        for statement in SEED.strip().split(";\n"):
            if "$1" in statement:
                await connection.execute(statement, backlog)
            else:
                await connection.execute(statement)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return url


async def one_claim(store: Store, owner: str) -> float:
    """One dispatcher round: claim, take the item, finish it, let go. Its seconds."""
    started = time.perf_counter()
    claim = await store.claim_thread(owner, 10.0, DEFAULT_CAPS)
    assert claim is not None, "the backlog ran out"
    item = await store.next_item(claim.thread, claim.lease, 10.0)
    assert item is not None
    await store.finish_item(item.id, claim.lease)
    assert await store.release_thread(claim.thread, claim.lease)
    return time.perf_counter() - started


async def worker(url: str, seconds: float, owner: str) -> None:
    """A process of its own: claims for `seconds`, then prints how many."""
    store = await open_store(url)
    try:
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            await one_claim(store, owner)
            done += 1
        print(done)
    finally:
        await store.close()


async def throughput(url: str, processes: int, seconds: float) -> float:
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", url, str(seconds), f"p{n}", stdout=asyncio.subprocess.PIPE
        )
        for n in range(processes)
    ]
    counts = [int((await w.communicate())[0]) for w in workers]
    return sum(counts) / seconds


async def latency(url: str, rounds: int = 300) -> float:
    store = await open_store(url)
    try:
        for _ in range(20):  # warm the pool and the plans
            await one_claim(store, "warm")
        return statistics.median([await one_claim(store, "p") for _ in range(rounds)])
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--worker", nargs=3, metavar=("URL", "SECONDS", "OWNER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, seconds, owner = args.worker
        await worker(url, float(seconds), owner)
        return
    with postgres_server() as dsn:
        print("| processes | claims/s | × one process |")
        print("| ---: | ---: | ---: |")
        one = 0.0
        for processes in (1, 2, 3):
            url = await seeded(dsn, f"claims_{processes}_{int(time.time())}", 10_000 * processes)
            rate = await throughput(url, processes, args.seconds)
            one = one or rate
            print(f"| {processes} | {rate:.0f} | {rate / one:.2f} |")
        print()
        print("| waiting items | one claim (median) |")
        print("| ---: | ---: |")
        for backlog in (1_000, 100_000):
            url = await seeded(dsn, f"backlog_{backlog}_{int(time.time())}", backlog)
            print(f"| {backlog:,} | {await latency(url) * 1000:.2f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
