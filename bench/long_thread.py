"""A long thread through the fakes: every turn answered, peak context, and the input bill.

Run from the repository root:  python bench/long_thread.py [--turns 30] [--chars 32000] [--model M]

Each turn's code prints about `--chars` characters. The fake API keeps the books as the API
does (breakpoints, the 20-block lookback, the 1,024-token minimum, 5-minute entries, the
context window), so the bill is what the API would charge for input:
input + 1.25 x cache writes + 0.1 x cache reads. It is divided by the bill of re-sending the
whole stored history uncached every turn (which would not even fit the window late in the run).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from harness import CHANNEL, bench

from storage import ThreadKey
from tests.fakes import Reply, code_run, text
from tests.fakes.anthropic_books import count_tokens

ROOT_TS = "1700009000.000000"
LOG_LINE = (
    "{day} INFO worker {worker} finished the nightly invoice batch {batch} for the northern"
    " region without errors and wrote the summary report\n"
)


def output(turn: int, chars: int) -> str:
    """Log-like code output of `chars` characters, different every turn."""
    lines, n = [], 0
    while sum(map(len, lines)) < chars:
        lines.append(
            LOG_LINE.format(
                day=f"2026-11-{turn % 28 + 1:02d}", worker=n % 8, batch=turn * 10_000 + n,
            )
        )
        n += 1
    return "".join(lines)[:chars]


async def run(
    turns: int, chars: int, minutes_between: float, verbose: bool = False, model: str = "claude-sonnet-5-5"
) -> dict[str, float]:
    async with bench(anthropic_model=model) as b:
        outputs = [output(n, chars) for n in range(turns)]
        b.claude.responder = lambda body: Reply(
            [text("Running it."), *code_run("python step.py", stdout=outputs[len(b.claude.usages)]),
             text(f"Turn {len(b.claude.usages)} done.")]
        )
        for n in range(turns):
            await b.say(ROOT_TS, n, f"run step {n} and summarise the log")
            b.claude.advance(minutes_between * 60)
        said = "\n".join(b.slack.thread_texts(CHANNEL, ROOT_TS))
        history = (await b.bot.runtime.store.load_conversation(ThreadKey("T1", CHANNEL, ROOT_TS))).history
        first = b.claude.requests[0]
        usages = b.claude.usages
        window = b.claude.window(model)
        trimmed = sum("characters left out" in json.dumps(request["messages"]) for request in b.claude.requests)
    if verbose:
        for n, u in enumerate(usages):
            print(f"request {n:>2}: input {u['input_tokens']:>7,} write {u['cache_creation_input_tokens']:>7,}"
                  f" read {u['cache_read_input_tokens']:>7,}")
    answered = sum(f"Turn {n} done." in said for n in range(turns))
    bill = sum(
        u["input_tokens"] + 1.25 * u["cache_creation_input_tokens"] + 0.1 * u["cache_read_input_tokens"] for u in usages
    )
    uncached = sum(
        count_tokens({"model": first["model"], "system": first["system"], "tools": first["tools"],
                      "messages": history[: 2 * n + 1]})
        for n in range(turns)
    )
    prompts = [u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"] for u in usages]
    return {
        "model": model,
        "window": window,
        "turns": turns,
        "answered": answered,
        "requests": len(usages),
        "output_tokens_per_turn": count_tokens({"messages": [{"role": "user", "content": outputs[0]}]}),
        "peak_context": max(prompts),
        "full_history_at_end": count_tokens(
            {"model": first["model"], "system": first["system"], "tools": first["tools"], "messages": history}
        ),
        "rebuilds": sum(u["cache_creation_input_tokens"] > 3 * chars / 4 for u in usages),
        "trimmed_requests": trimmed,
        "bill": bill,
        "uncached": uncached,
        "ratio": bill / uncached,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--chars", type=int, default=32_000)
    parser.add_argument("--verbose", action="store_true", help="print every request's usage")
    parser.add_argument("--model", default="claude-sonnet-5-5", help="a model of the fake (its window applies)")
    parser.add_argument(
        "--minutes-between", type=float, default=0.0, help="pause between turns (cache entries live 5 minutes)"
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.turns, args.chars, args.minutes_between, args.verbose, args.model))
    for key, value in result.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
        print(f"{key:>24}: {shown}")


if __name__ == "__main__":
    main()
