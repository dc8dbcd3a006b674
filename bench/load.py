"""Many people at once against one bot process with the default settings.

Run from the repository root:  python bench/load.py [--people 40 200] [--model-seconds 3]

Starts the loopback fakes in this process and one real `python -m bot` in HTTP mode with every
setting at its default (SQLite, `MAX_CONCURRENT_TURNS`, the per-person cap). Each person
mentions the bot in a channel of their own at the same moment; every model answer takes
`--model-seconds`. Reports the wall time until every thread shows its finished answer as a
multiple of the model's time, the acknowledgement time of the events (p50, p99, max: the HTTP
answer to Slack's POST), and the bot's resident memory per running turn (its peak while all
turns run, above its idle size, divided by the turns).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.fakes import FakeAnthropic, FakeSlack  # noqa: E402
from tests.fakes.anthropic_api import Reply, text  # noqa: E402
from tests.fakes.slack_api import mention_event  # noqa: E402
from tests.processes import HttpBot, bot_process_env, http_bots, wait_for  # noqa: E402


def resident_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def answered(slack: FakeSlack, channel: str, root: str) -> bool:
    return any("done" in m.get("text", "") and not m.get("streaming") for m in slack.thread(channel, root))


async def paced_seconds(bot: HttpBot) -> dict[str, float]:
    """How long the bot's Slack calls waited for rate budget so far, by method (its /metrics)."""
    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/metrics") as response:
        lines = (await response.text()).splitlines()
    prefix = "threadbox_slack_paced_seconds_total{"
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix)
    }


async def timed_send(bot: HttpBot, event: dict[str, object]) -> float:
    started = time.perf_counter()
    status = await bot.send_event(event)
    assert status == 200, status
    return time.perf_counter() - started


async def burst(bot: HttpBot, slack: FakeSlack, claude: FakeAnthropic, people: int, model_seconds: float, round_: int
                ) -> dict[str, float]:
    claude.enqueue(*(Reply([text("done")], delay=model_seconds) for _ in range(people)))
    threads = [(f"C{round_}{i:04d}", f"17{round_}0{40000 + i}.000100") for i in range(people)]
    slack.directory += [f"U{round_}{i:04d}" for i in range(people)]  # the workspace's people
    pid = bot.process.pid
    idle = resident_kb(pid)
    peak = idle
    started = time.monotonic()
    sends = asyncio.gather(*(
        timed_send(bot, mention_event(f"job {i}", channel=channel, user=f"U{round_}{i:04d}", ts=root))
        for i, (channel, root) in enumerate(threads)
    ))

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, resident_kb(pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    acks = await sends
    await wait_for(lambda: all(answered(slack, c, r) for c, r in threads), timeout=600)
    elapsed = time.monotonic() - started
    sampler.cancel()
    acks.sort()
    return {
        "ratio": elapsed / model_seconds,
        "seconds": elapsed,
        "p50_ms": statistics.median(acks) * 1000,
        "p99_ms": acks[min(len(acks) - 1, int(len(acks) * 0.99))] * 1000,
        "max_ms": acks[-1] * 1000,
        "kb_per_turn": (peak - idle) / people,
        "idle_mb": idle / 1024,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, nargs="+", default=[40, 200])
    parser.add_argument("--model-seconds", type=float, default=3.0)
    args = parser.parse_args()
    slack, claude = FakeSlack(), FakeAnthropic()
    await slack.start()
    await claude.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            env = bot_process_env(work, slack, claude, LOG_LEVEL="WARNING")
            async with http_bots(1, env, work) as [bot]:
                # One warm-up turn, so the first burst does not pay for imports and connections.
                await burst(bot, slack, claude, 1, 0.1, 9)
                print("| people at once | all answered | x model time | ack p50 | ack p99 | ack max"
                      " | memory per turn |")
                print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                for round_, people in enumerate(args.people, start=1):
                    r = await burst(bot, slack, claude, people, args.model_seconds, round_)
                    print(f"| {people} | {r['seconds']:.1f} s | {r['ratio']:.2f} | {r['p50_ms']:.0f} ms"
                          f" | {r['p99_ms']:.0f} ms | {r['max_ms']:.0f} ms | {r['kb_per_turn'] / 1024:.2f} MB |")
                    waited = {m: round(s, 1) for m, s in (await paced_seconds(bot)).items() if s}
                    print(f"  (Slack calls waited for rate budget so far, seconds by method: {waited or 'none'})")
    finally:
        await slack.stop()
        await claude.stop()


if __name__ == "__main__":
    asyncio.run(main())
