"""Slack calls per answer, besides the stream's appends, and how often the appends go.

Run from the repository root:  python bench/slack_calls.py

Each answer is a new thread in a channel, after one warm-up answer (Bolt's first `auth.test`
and the access check's first `users.info` are not the answer's). Web API calls are counted
by method; the uploads of file bytes (to the URL Slack hands out) are counted apart.
Goals: a text-only answer at most 5 calls (short, or over ten seconds) and one message; one
code run at most 6; one code run and three output files at most 9; appends at most about
one a second while text flows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from harness import CHANNEL, bench

from tests.fakes import Reply, code_run, text

GOALS = {"text, short": 5, "text, over ten seconds": 5, "one code run": 6, "one code run, three files": 9}


async def measure() -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    async with bench() as b:
        await b.say("1700009000.000000", 0, "warm up")  # the first event's auth.test, users.info
        files = [b.claude.add_file(f"chart{n}.png", b"\x89PNG fake" * (n + 1)) for n in range(3)]
        answers = {
            "text, short": Reply([text("Forty-two.")]),
            "text, over ten seconds": Reply(
                [text(f"Sentence {n} of a long answer. ") for n in range(40)], chunk_delay=0.1
            ),
            "one code run": Reply([text("Running it."), *code_run("python run.py", stdout="ok"), text("Done.")]),
            "one code run, three files": Reply(
                [text("Plotting."), *code_run("python plot.py", stdout="saved", file_ids=files), text("Three charts.")]
            ),
        }
        for n, (name, answer) in enumerate(answers.items()):
            b.claude.enqueue(answer)
            before = len(b.slack.calls)
            root = f"17000091{n:02d}.000000"
            await b.say(root, 0, "a question")
            await b.bot.idle(quiet=0.3)
            calls = b.slack.calls[before:]
            methods = [c.method for c in calls if c.method not in ("chat.appendStream", "upload")]
            appends = [c for c in calls if c.method == "chat.appendStream"]
            seconds = max(0.001, _span(calls))
            results[name] = {
                "calls": len(methods),
                "by_method": {m: methods.count(m) for m in dict.fromkeys(methods)},
                "appends": len(appends),
                "appends_per_second": len(appends) / seconds,
                "seconds": seconds,
                "uploads": sum(c.method == "upload" for c in calls),
                "messages": len(b.slack.thread(CHANNEL, root)),
            }
    return results


def _span(calls: list[Any]) -> float:
    stamps = [c.at for c in calls]
    return max(stamps) - min(stamps) if len(stamps) > 1 else 0.0


def main() -> None:
    for name, result in asyncio.run(measure()).items():
        goal = GOALS[name]
        verdict = "ok" if result["calls"] <= goal else "OVER"
        print(
            f"{name}: {result['calls']} calls (goal ≤ {goal}: {verdict}), {result['messages']} message(s),"
            f" {result['appends']} appends over {result['seconds']:.1f} s"
            + (f" ({result['appends_per_second']:.2f}/s)" if result["seconds"] > 2 else "")
            + f", {result['uploads']} byte uploads"
        )
        print("    " + ", ".join(f"{m} x{n}" for m, n in result["by_method"].items()))


if __name__ == "__main__":
    main()
