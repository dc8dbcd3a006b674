"""Prompt caching, threads past the context window, usage records, and the first word sooner."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.policy.usage import Prices
from storage import ThreadKey
from tests.conftest import BotServer, running_bot, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"


def output(turn: int, lines: int) -> str:
    """Code output of about 40 characters a line, distinct per turn."""
    return "".join(f"turn {turn} line {n:04d}: the value is {n * 7919 % 10007}\n" for n in range(lines))


async def say(bot: BotServer, slack: FakeSlack, root: str, n: int, words: str) -> None:
    """Send message `n` of the thread at `root` (a mention for the first) and wait for its answer."""
    ts = f"{root[:-6]}{n:06d}"
    event = (
        mention_event(words, channel=CHANNEL, user="U1", ts=ts)
        if n == 0
        else message_event(words, channel=CHANNEL, user="U1", ts=ts, thread_ts=root)
    )
    await bot.send_event(event)
    await bot.idle(quiet=0.05)  # the turn, however its answer is shown (streamed or posted)


def stdout_of(block: dict[str, Any]) -> str:
    return str(block["content"].get("stdout", ""))


async def test_requests_cache_their_prefix_and_read_it_from_the_second_turn_on(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000100.000000"
    claude_api.responder = lambda body: Reply(
        [text("Running."), *code_run("python report.py", stdout=output(len(claude_api.requests), 150)), text("Done.")]
    )
    claude_api.enqueue(
        Reply([text("Start. "), *code_run("sleep 100", stdout=output(0, 150))], stop_reason="pause_turn"),
    )
    for n in range(4):
        await say(bot, slack, root, n, f"report {n}")

    requests = claude_api.requests
    assert len(requests) == 5  # the first turn was paused once
    for request in requests:
        assert request["cache_control"] == {"type": "ephemeral"}
        marked = [b for m in request["messages"] for b in m["content"] if "cache_control" in b]
        assert len(marked) <= 1 and request["system"][0]["cache_control"] == {"type": "ephemeral"}
    # The system prompt and tools are byte-for-byte the same on every request.
    assert len({json.dumps(r["system"]) for r in requests}) == 1
    assert len({json.dumps(r["tools"]) for r in requests}) == 1

    usages = claude_api.usages
    # The first request is under the 1,024-token minimum; its continuation is not.
    assert usages[0]["cache_read_input_tokens"] == usages[0]["cache_creation_input_tokens"] == 0
    assert usages[1]["cache_creation_input_tokens"] > 1024
    for before, after in zip(usages, usages[1:]):
        # Everything sent before is read back; only what is new is written.
        prefix = before["cache_read_input_tokens"] + before["cache_creation_input_tokens"]
        assert after["cache_read_input_tokens"] >= prefix
        assert after["input_tokens"] == 0
    assert all(u["cache_read_input_tokens"] > 0 for u in usages[2:])


async def test_a_turn_with_more_than_twenty_blocks_still_hits_the_cache(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000101.000000"
    many_runs = [block for n in range(15) for block in code_run(f"step {n}", stdout=output(n, 20))]
    claude_api.enqueue(
        Reply([*code_run("cat data.csv", stdout=output(0, 200)), text("Read it.")]),
        Reply([*many_runs, text("All steps ran.")]),
        Reply([text("Next.")]),
    )
    await say(bot, slack, root, 0, "read the data")
    await say(bot, slack, root, 1, "run fifteen steps")
    await say(bot, slack, root, 2, "and then?")
    _, written, read_back = claude_api.usages
    assert written["cache_creation_input_tokens"] > 1024
    # 31 blocks were added since that entry: only the breakpoint at the previous message finds it.
    assert read_back["cache_read_input_tokens"] == written["cache_read_input_tokens"] + written["cache_creation_input_tokens"]


async def test_a_thread_past_the_context_window_is_answered_with_its_recent_turns_intact(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    window = 20_000
    claude_api.context_window = window
    outputs = [output(n, 400) for n in range(10)]  # about 5,000 tokens each
    claude_api.responder = lambda body: Reply(
        [*code_run("python step.py", stdout=outputs[len(claude_api.usages)]), text(f"Answer {len(claude_api.usages)}.")]
    )
    root = "1700000102.000000"
    async with running_bot(replace(settings, context_window=window), slack) as bot:
        for n in range(10):
            await say(bot, slack, root, n, f"step {n}")
        history = (await bot.runtime.store.load_conversation(ThreadKey("T1", CHANNEL, root))).history

    said = thread_text(slack, CHANNEL, root)
    for n in range(10):
        assert f"Answer {n}." in said
    assert "Something went wrong" not in said and "could not handle" not in said
    assert len(claude_api.requests) == 10  # no request was refused
    assert max(u["input_tokens"] + u["cache_creation_input_tokens"] + u["cache_read_input_tokens"] for u in claude_api.usages) <= window
    # The last request has the turn before it verbatim, every message's words, and older output left out.
    last = claude_api.requests[-1]["messages"]
    assert [m["content"][0]["text"] for m in last if m["role"] == "user"] == [said_by("U1", f"step {n}") for n in range(10)]
    results = [b for m in last if m["role"] == "assistant" for b in m["content"] if b["type"].endswith("_tool_result")]
    assert stdout_of(results[-1]) == outputs[8]
    assert "left out of this older code run" in stdout_of(results[0])
    # The stored history stays whole, and the thread was told once per step of trimming.
    stored = [b for m in history if m["role"] == "assistant" for b in m["content"] if b["type"].endswith("_tool_result")]
    assert [stdout_of(b) for b in stored] == outputs
    assert said.count("older code output in this thread was left out") == 1


async def test_prompt_too_long_is_recovered_with_one_retry_and_one_note(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000103.000000"
    claude_api.responder = lambda body: Reply(
        [*code_run("python dump.py", stdout=output(len(claude_api.usages), 300)), text(f"Dump {len(claude_api.usages)}.")]
    )
    for n in range(3):
        await say(bot, slack, root, n, f"dump {n}")
    # The model's real window turns out far smaller than the bot's setting says.
    claude_api.context_window = 6_000
    await say(bot, slack, root, 3, "dump again")
    await say(bot, slack, root, 4, "and once more")

    said = thread_text(slack, CHANNEL, root)
    assert "Dump 3." in said and "Dump 4." in said
    assert said.count("older code output in this thread was left out") == 1
    assert len(claude_api.requests) == 3 + 2 + 1  # one refused request, retried once; the next fits at once
    retried = claude_api.requests[4]["messages"]
    assert retried[-1]["content"][0]["text"] == said_by("U1", "dump again")
    assert len(json.dumps(retried)) < len(json.dumps(claude_api.requests[3]["messages"])) / 2


async def test_a_prompt_still_too_long_after_shedding_ends_in_one_clear_line(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.context_window = 2_000
    root = "1700000104.000000"
    await say(bot, slack, root, 0, "word " * 3000)
    said = thread_text(slack, CHANNEL, root)
    assert len(claude_api.requests) == 2  # the request and one retry, no more
    assert "prompt is too long" in said
    assert claude_api.usages == []


async def test_usage_is_stored_per_turn_and_shown_by_usage_and_the_footer(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.responder = lambda body: Reply([*code_run("python a.py", stdout=output(1, 100)), text("ok")])
    root = "1700000105.000000"
    async with running_bot(replace(settings, show_usage=True), slack) as bot:
        for n in range(3):
            await say(bot, slack, root, n, f"request {n}")
        await bot.send_event(message_event("!usage", channel=CHANNEL, user="U1", ts="1700000105.000009", thread_ts=root))
        await bot.wait_for(lambda: "Usage in this thread" in thread_text(slack, CHANNEL, root))
        store = bot.runtime.store
        thread = await store.thread_usage(ThreadKey("T1", CHANNEL, root))
        person = await store.user_usage("T1", "U1")
        other = await store.user_usage("T1", "U2")

    usages = claude_api.usages
    assert thread.turns == 3 and thread.code_runs == 3
    assert thread.input_tokens == sum(u["input_tokens"] for u in usages)
    assert thread.cache_creation_input_tokens == sum(u["cache_creation_input_tokens"] for u in usages)
    assert thread.cache_read_input_tokens == sum(u["cache_read_input_tokens"] for u in usages) > 0
    assert thread.output_tokens == sum(u["output_tokens"] for u in usages)
    assert person == thread and other.turns == 0
    assert len(claude_api.requests) == 3  # `!usage` is answered without the model

    said = thread_text(slack, CHANNEL, root)
    assert f"cache reads {thread.cache_read_input_tokens:,}" in said
    assert "estimated cost $" in said
    footers = [closing_line(m) for m in slack.thread(CHANNEL, root) if m.get("blocks")]
    assert len(footers) == 3
    assert all("1 code run" in f and " in" in f and " out" in f and "~$" in f for f in footers)
    assert "cached" in footers[2] and "cached" not in footers[0]


def closing_line(message: dict[str, Any]) -> str:
    """A finished reply's closing line: its last context block (the feedback buttons follow it)."""
    return str([b for b in message["blocks"] if b["type"] == "context"][-1]["elements"][0]["text"])


async def test_usage_footer_is_off_by_default(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    root = "1700000106.000000"
    claude_api.enqueue(Reply([*code_run("ls"), text("ok")]))
    await say(bot, slack, root, 0, "list")
    [final] = [m for m in slack.thread(CHANNEL, root) if m.get("blocks")]
    assert closing_line(final) == "✅ Done · 1 code run"


async def test_the_model_request_goes_out_before_the_slack_reply_is_open(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000107.000000"
    # Slack is slow to open the reply; the model is asked meanwhile, not after.
    slack.delay("chat.startStream", 2.0)
    slack.delay("assistant.threads.setStatus", 2.0)
    replies_seen: list[int] = []

    def answer(body: dict[str, Any]) -> Reply:
        replies_seen.append(len(slack.thread(CHANNEL, root)))
        return Reply([text("Early words, held until the reply is open.")])

    claude_api.responder = answer
    await say(bot, slack, root, 0, "quick question")
    assert replies_seen == [0]
    [reply] = slack.thread(CHANNEL, root)
    assert "Early words, held until the reply is open." in slack.rendered_text(reply)


async def test_the_status_is_set_only_when_it_changes(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    root = "1700000108.000000"
    claude_api.enqueue(Reply([*code_run("a"), *code_run("b"), *code_run("c"), text("three runs")]))
    await say(bot, slack, root, 0, "run three")
    statuses = [call["status"] for call in slack.calls_to("assistant.threads.setStatus")]
    assert statuses == ["is thinking…", "is running code…"]


def test_context_window_usage_footer_and_prices_are_settings() -> None:
    required = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ANTHROPIC_API_KEY": "k"}
    defaults = load_settings(required)
    assert defaults.context_window is None and not defaults.show_usage  # None: the model's own
    assert defaults.prices == Prices(input=2.0, cache_write=2.5, cache_read=0.20, output=10.0)
    custom = load_settings(
        {**required, "CONTEXT_WINDOW_TOKENS": "1000000", "SHOW_USAGE": "true", "USAGE_PRICES": "input=5, output=25"}
    )
    assert custom.context_window == 1_000_000 and custom.show_usage
    assert custom.prices == Prices(input=5.0, cache_write=2.5, cache_read=0.20, output=25.0)
    with pytest.raises(ConfigError, match="USAGE_PRICES"):
        load_settings({**required, "USAGE_PRICES": "input=cheap"})
    with pytest.raises(ConfigError, match="USAGE_PRICES"):
        load_settings({**required, "USAGE_PRICES": "tokens=3"})


async def test_older_output_is_shed_in_large_steps_so_the_cache_is_rarely_rebuilt(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    window = 60_000
    claude_api.context_window = window
    claude_api.responder = lambda body: Reply(
        [*code_run("python step.py", stdout=output(len(claude_api.usages), 200)), text("ok")]
    )
    root = "1700000109.000000"
    async with running_bot(replace(settings, context_window=window), slack) as bot:
        for n in range(20):
            await say(bot, slack, root, n, f"step {n}")

    usages = claude_api.usages
    trimmed = [
        any("left out of this older code run" in json.dumps(m) for m in request["messages"])
        for request in claude_api.requests
    ]
    assert trimmed[-1] and not trimmed[0]
    # A rebuild: the request could not read back everything the one before it had cached.
    rebuilds = [
        n for n in range(1, len(usages))
        if usages[n]["cache_read_input_tokens"]
        < usages[n - 1]["cache_read_input_tokens"] + usages[n - 1]["cache_creation_input_tokens"]
    ]
    turns_trimming = sum(trimmed)
    assert turns_trimming >= 5
    assert 1 <= len(rebuilds) <= turns_trimming // 2, (rebuilds, turns_trimming)
