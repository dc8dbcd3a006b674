"""The chaos run, long: three processes on one PostgreSQL database, a few hundred messages.

Run from the repository root:  python bench/chaos.py [--threads 60] [--messages 5] [--seed 1]

See `tests/chaos.py` for what happens and what is checked; prints the figures for
`bench/README.md` and every problem found (none is the goal).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import ChaosPlan, chaos_run  # noqa: E402
from tests.postgres_server import running_postgres  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=60)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    plan = ChaosPlan(threads=args.threads, messages_per_thread=args.messages, kills=3, stops=3, seed=args.seed,
                     timeout=600)
    with running_postgres() as server, tempfile.TemporaryDirectory() as tmp:
        report = await chaos_run(server, Path(tmp), plan)
    print(f"{report.messages} messages in {plan.threads} threads, {plan.processes} processes,"
          f" {plan.kills} kill -9, {plan.stops} SIGTERM, database restarted: {plan.restart_database}")
    print(f"all answered after {report.seconds:.0f} s; replies marked interrupted and run again:"
          f" {report.interrupted_replies}")
    print(f"faults injected: {report.injected}")
    for pid, (settled, last) in report.memory_mb.items():
        print(f"process {pid}: {settled:.0f} MB after its first turns, {last:.0f} MB at the end")
    print(f"problems: {len(report.problems)}")
    for problem in report.problems:
        print(f"  {problem}")
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    asyncio.run(main())
