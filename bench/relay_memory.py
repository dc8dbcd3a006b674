"""Peak memory of relaying a large file each way, through the loopback fakes.

Run from the repository root:  python bench/relay_memory.py [--size-mb 200]

The fakes run in a child process so that only the bot's own memory is measured here. The
relay uses the same functions a turn uses: Slack -> Files API for a file a user shares, and
Files API -> Slack (three-step external upload) for a file the code produced, and `!export`'s
zip of a thread whose code produced that file (the zip built on disk, then uploaded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024

SERVE_FAKES = """
import asyncio, json, sys
from tests.fakes import FakeAnthropic, FakeSlack

async def main(size):
    slack, claude = FakeSlack(), FakeAnthropic()
    await slack.start(); await claude.start()
    shared = slack.add_user_file("input.bin", size=size, mimetype="application/octet-stream")
    produced = claude.add_file("output.bin", size=size, mime_type="application/octet-stream")
    print(json.dumps({"slack": slack.base_url, "token": slack.bot_token, "claude": claude.base_url,
                      "key": claude.api_key, "shared": shared, "produced": produced}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1])))
"""


def rss_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


async def run(size: int) -> list[dict[str, float]]:
    import aiohttp
    import anthropic
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.config import DEFAULTS
    from bot.outbound.uploads import relay_output_to_slack
    from bot.turn.export import ThreadExports
    from bot.turn.shared_files import relay_slack_file_to_claude
    from storage import ThreadFile

    timeout = float(DEFAULTS["FILE_TIMEOUT_SECONDS"])

    fakes = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
        [sys.executable, "-c", SERVE_FAKES, str(size)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert fakes.stdout is not None
        info = json.loads(fakes.stdout.readline())
        slack = AsyncWebClient(token=info["token"], base_url=info["slack"])
        claude = anthropic.AsyncAnthropic(api_key=info["key"], base_url=info["claude"])
        async with aiohttp.ClientSession() as http:
            await slack.auth_test()  # warm every client up before measuring the idle process
            results = []
            exports = ThreadExports(None, claude, http, timeout=timeout, max_file_bytes=size,  # type: ignore[arg-type]
                                    max_fork_files=1, max_fork_bytes=size)
            for direction in ("slack -> container", "container -> slack", "export (zip)"):
                idle = rss_kib("VmRSS")
                reset_peak()
                started = time.perf_counter()
                if direction == "slack -> container":
                    await relay_slack_file_to_claude(
                        info["shared"], slack=slack, claude=claude, http=http, max_bytes=size, timeout=timeout
                    )
                elif direction == "container -> slack":
                    await relay_output_to_slack(
                        claude, slack, http, info["produced"], channel_id="C1", thread_ts="1.1", timeout=timeout
                    )
                else:  # the export's zip needs no store: its files are given
                    produced = ThreadFile(info["produced"], "out", "output.bin", size)
                    with tempfile.TemporaryFile() as spool:
                        packed, _ = await exports.pack(slack, spool, "thread.ipynb", b"{}", [produced], "bench")
                        assert packed and packed[0].size == size
                seconds = time.perf_counter() - started
                results.append(
                    {
                        "direction": direction,
                        "seconds": seconds,
                        "mb_per_s": size / MB / seconds,
                        "idle_mb": idle / 1024,
                        "peak_above_idle_mb": (rss_kib("VmHWM") - idle) / 1024,
                    }
                )
        await claude.close()
        return results
    finally:
        fakes.terminate()
        fakes.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    results = asyncio.run(run(args.size_mb * MB))
    print(f"file size: {args.size_mb} MB")
    print(f"{'direction':<20} {'seconds':>8} {'MB/s':>8} {'idle RSS MB':>12} {'peak above idle MB':>19}")
    for row in results:
        print(
            f"{row['direction']:<20} {row['seconds']:>8.2f} {row['mb_per_s']:>8.0f}"
            f" {row['idle_mb']:>12.1f} {row['peak_above_idle_mb']:>19.1f}"
        )


if __name__ == "__main__":
    main()
