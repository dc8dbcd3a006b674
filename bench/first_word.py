"""Time to the first visible word of an answer, and Slack calls and database statements per turn.

Run from the repository root:  python bench/first_word.py [--trials 15]

The fake Slack answers every Web API call after `--slack-ms` (120) and the fake model sends
its first token `--model-ms` (800) after the request, and the rest over the next half second.
The ideal is model + one Slack call: the word cannot show before the model says it and Slack
takes it. Measured from sending the mention to the bot until Slack has handled the call
carrying the first word.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from harness import bench

from tests.fakes import Reply, code_run, text

FIRST_WORD = "Hello"
CHUNK_SECONDS = 0.1
ANSWER_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream", "chat.postMessage", "chat.update")


async def first_word(trials: int, slack_ms: float, model_ms: float, streaming: bool) -> list[float]:
    """Seconds over the ideal, one per trial (a new thread each)."""
    overheads = []
    async with bench(slack_streaming=streaming) as b:
        seen: dict[str, float] = {}
        for method in ANSWER_METHODS:
            b.slack._handlers[method] = _noting(b.slack._handlers[method], seen)
        for method in list(b.slack._handlers):
            b.slack.delay(method, slack_ms / 1000)
        answer = [text(f"{FIRST_WORD}, here is the answer you asked for.")]
        # Three events (message_start, ping, content_block_start) precede the first text delta.
        paced = Reply(answer, delay=model_ms / 1000 - 3 * CHUNK_SECONDS, chunk_delay=CHUNK_SECONDS)
        b.claude.responder = lambda body: paced
        await b.say("1700008000.000000", 0, "warm up")  # Bolt's first auth.test, connections
        for trial in range(trials):
            seen.clear()
            started = time.perf_counter()
            await b.say(f"17000081{trial:02d}.000000", 0, "a question")
            overheads.append(seen["at"] - started - (model_ms + slack_ms) / 1000)
    return overheads


Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _noting(handler: Handler, seen: dict[str, float]) -> Handler:
    def handle(args: dict[str, Any]) -> dict[str, Any]:
        if "at" not in seen and FIRST_WORD in json.dumps(args):
            seen["at"] = time.perf_counter()
        return handler(args)

    return handle


async def calls_per_turn() -> dict[str, Any]:
    """A mention with one code run and one output file, a follow-up without code, one with three runs."""
    async with bench() as b:
        statements: list[str] = []
        await b.bot.runtime.store.db.set_trace_callback(statements.append)
        chart = b.claude.add_file("chart.png", b"\x89PNG fake", mime_type="image/png")
        three_runs = [block for n in range(3) for block in code_run(f"python step{n}.py", stdout="ok")]
        b.claude.enqueue(
            Reply(
                [text("Plotting."), *code_run("python plot.py", stdout="saved", file_ids=[chart]), text("Here it is.")]
            ),
            Reply([text("It shows a rising line.")]),
            Reply([text("Running three steps."), *three_runs, text("All three ran.")]),
        )
        results = {}
        for n, words in enumerate(("plot it", "what does it show?", "run three steps")):
            calls, statements_before = len(b.slack.calls), len(statements)
            await b.say("1700008500.000000", n, words)
            await b.bot.idle(quiet=0.3)
            methods = [c.method for c in b.slack.calls[calls:]]
            results[words] = {
                "slack_calls": len(methods),
                "by_method": {m: methods.count(m) for m in dict.fromkeys(methods)},
                "db_statements": len(statements) - statements_before,
            }
        await b.bot.runtime.store.db.set_trace_callback(None)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--slack-ms", type=float, default=120)
    parser.add_argument("--model-ms", type=float, default=800)
    args = parser.parse_args()
    for streaming in (True, False):
        overheads = asyncio.run(first_word(args.trials, args.slack_ms, args.model_ms, streaming))
        ms = sorted(o * 1000 for o in overheads)
        print(
            f"first word over the ideal ({'streaming' if streaming else 'message updates'}):"
            f" median {statistics.median(ms):.0f} ms, best {ms[0]:.0f} ms, worst {ms[-1]:.0f} ms"
            f" ({args.trials} trials)"
        )
    for turn, counts in asyncio.run(calls_per_turn()).items():
        print(f"{turn!r}: {counts['slack_calls']} Slack calls, {counts['db_statements']} database statements")
        print("    " + ", ".join(f"{m} x{n}" for m, n in counts["by_method"].items()))


if __name__ == "__main__":
    main()
