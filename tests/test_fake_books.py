"""The fake Anthropic API keeps the books as the API does: tokens, the prompt cache, the
context window and context editing, read back through the real anthropic client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from tests.fakes import FakeAnthropic, Reply, code_run, text
from tests.fakes.anthropic_books import text_tokens

MODEL = "claude-sonnet-5"
CODE_TOOL = {"type": "code_execution_20250825", "name": "code_execution"}
EPHEMERAL = {"type": "ephemeral"}
# About 2,000 tokens of prose: over the 1,024-token minimum on its own.
LONG = " ".join(f"word{n % 97} is here." for n in range(500))


@pytest.fixture
async def client(claude_api: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    made = anthropic.AsyncAnthropic(base_url=claude_api.base_url, api_key=claude_api.api_key, max_retries=0)
    yield made
    await made.close()


def user(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": content, **extra}]}


def assistant(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": content}]}


async def ask(client: anthropic.AsyncAnthropic, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=messages, **kwargs) as stream:  # type: ignore[arg-type]
        return await stream.get_final_message()


def test_code_output_is_a_few_characters_a_token() -> None:
    output = "".join(f"row {n:05d}: value={n * 37 % 1000:4d} status=ok\n" for n in range(800))
    assert 2.5 < len(output) / text_tokens(output) < 5.5


async def test_count_tokens_matches_what_a_request_is_billed(
    client: anthropic.AsyncAnthropic, claude_api: FakeAnthropic
) -> None:
    messages = [user(LONG)]
    counted = await client.messages.count_tokens(model=MODEL, messages=messages, system="Be brief.")  # type: ignore[arg-type]
    message = await ask(client, messages, system="Be brief.")
    usage = message.usage
    assert counted.input_tokens > 1024
    assert usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens == counted.input_tokens
    assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0  # no breakpoint, no cache


async def test_a_breakpoint_writes_then_reads_and_the_streamed_usage_says_so(
    client: anthropic.AsyncAnthropic, claude_api: FakeAnthropic
) -> None:
    first = await ask(client, [user(LONG, cache_control=EPHEMERAL)])
    assert first.usage.cache_creation_input_tokens > 1024 and first.usage.cache_read_input_tokens == 0
    follow_up = [user(LONG), assistant("Sure."), user("And then?", cache_control=EPHEMERAL)]
    second = await ask(client, follow_up)
    # The first request's prefix is found by looking back from the new breakpoint.
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert 0 < second.usage.cache_creation_input_tokens < 100
    assert second.usage.input_tokens == 0
    assert claude_api.usages[-1]["cache_read_input_tokens"] == second.usage.cache_read_input_tokens


async def test_automatic_caching_marks_the_last_block(
    client: anthropic.AsyncAnthropic, claude_api: FakeAnthropic
) -> None:
    await ask(client, [user(LONG)], cache_control=EPHEMERAL)
    second = await ask(client, [user(LONG), assistant("ok"), user("more")], cache_control=EPHEMERAL)
    assert claude_api.requests[0]["cache_control"] == EPHEMERAL
    assert second.usage.cache_read_input_tokens > 1024
    assert second.usage.input_tokens == 0


async def test_short_prefixes_are_not_cached(client: anthropic.AsyncAnthropic) -> None:
    await ask(client, [user("short question", cache_control=EPHEMERAL)])
    again = await ask(client, [user("short question", cache_control=EPHEMERAL)])
    assert again.usage.cache_creation_input_tokens == again.usage.cache_read_input_tokens == 0
    assert again.usage.input_tokens > 0


async def test_the_lookback_reaches_twenty_blocks_and_no_further(client: anthropic.AsyncAnthropic) -> None:
    await ask(client, [user(LONG)], cache_control=EPHEMERAL)

    def later(blocks: int) -> list[dict[str, Any]]:
        many = [{"type": "text", "text": f"note {n}"} for n in range(blocks - 1)]
        return [user(LONG), {"role": "assistant", "content": many}, user("next")]

    near = await ask(client, later(20), cache_control=EPHEMERAL)
    assert near.usage.cache_read_input_tokens > 1024
    far = await ask(client, later(22), cache_control=EPHEMERAL)
    assert far.usage.cache_read_input_tokens == 0
    assert far.usage.cache_creation_input_tokens > 1024
    # An explicit breakpoint where the old entry ends finds it however far back it is.
    anchored = [user(LONG, cache_control=EPHEMERAL), *later(40)[1:]]
    hit = await ask(client, anchored, cache_control=EPHEMERAL)
    assert hit.usage.cache_read_input_tokens == near.usage.cache_read_input_tokens


async def test_entries_last_five_minutes_and_a_hit_refreshes_them(
    client: anthropic.AsyncAnthropic, claude_api: FakeAnthropic
) -> None:
    await ask(client, [user(LONG)], cache_control=EPHEMERAL)
    claude_api.advance(240)
    refreshed = await ask(client, [user(LONG)], cache_control=EPHEMERAL)
    assert refreshed.usage.cache_read_input_tokens > 1024
    claude_api.advance(240)  # 8 minutes after writing, 4 after the hit
    still = await ask(client, [user(LONG)], cache_control=EPHEMERAL)
    assert still.usage.cache_read_input_tokens > 1024
    claude_api.advance(301)
    expired = await ask(client, [user(LONG)], cache_control=EPHEMERAL)
    assert expired.usage.cache_read_input_tokens == 0 and expired.usage.cache_creation_input_tokens > 1024


async def test_a_changed_system_prompt_misses(client: anthropic.AsyncAnthropic) -> None:
    await ask(client, [user(LONG)], system="Be brief.", cache_control=EPHEMERAL)
    changed = await ask(client, [user(LONG)], system="Be very brief.", cache_control=EPHEMERAL)
    assert changed.usage.cache_read_input_tokens == 0


async def test_more_than_four_breakpoints_are_refused(client: anthropic.AsyncAnthropic) -> None:
    content = [{"type": "text", "text": f"part {n}", "cache_control": EPHEMERAL} for n in range(5)]
    with pytest.raises(anthropic.BadRequestError) as refused:
        await ask(client, [{"role": "user", "content": content}])
    assert "maximum of 4 blocks with cache_control" in str(refused.value)


async def test_a_prompt_over_the_context_window_is_refused_as_the_api_does(
    client: anthropic.AsyncAnthropic, claude_api: FakeAnthropic
) -> None:
    claude_api.context_window = 1500
    claude_api.enqueue(Reply([text("never sent")]))
    with pytest.raises(anthropic.BadRequestError) as refused:
        await ask(client, [user(LONG)])
    error = refused.value
    assert error.status_code == 400
    assert isinstance(error.body, dict) and error.body["error"]["type"] == "invalid_request_error"
    assert error.body["error"]["message"].startswith("prompt is too long: ")
    assert error.body["error"]["message"].endswith(" tokens > 1500 maximum")
    assert claude_api.pending == 1  # refused before any answer was produced


async def test_context_editing_clears_old_tool_results_before_counting(
    client: anthropic.AsyncAnthropic, claude_api: FakeAnthropic
) -> None:
    big = "x = 1234567\n" * 2000  # about 10,000 tokens
    runs = [code_run(f"step {n}", stdout=big) for n in range(4)]
    messages: list[dict[str, Any]] = []
    for n, run in enumerate(runs):
        messages += [user(f"run step {n}"), {"role": "assistant", "content": run}]
    messages.append(user("summarize"))
    claude_api.context_window = 35_000
    edits = {
        "edits": [
            {
                "type": "clear_tool_uses_20250919",
                "trigger": {"type": "input_tokens", "value": 30_000},
                "keep": {"type": "tool_uses", "value": 2},
                "clear_at_least": {"type": "input_tokens", "value": 5_000},
            }
        ]
    }
    with pytest.raises(anthropic.BadRequestError) as without_beta:
        await client.messages.create(
            model=MODEL, max_tokens=100, messages=messages, extra_body={"context_management": edits}  # type: ignore[arg-type]
        )
    assert "context_management" in str(without_beta.value)
    with pytest.raises(anthropic.BadRequestError):  # over the window when nothing is cleared
        await client.beta.messages.create(model=MODEL, max_tokens=100, messages=messages, tools=[CODE_TOOL])  # type: ignore[arg-type]

    message = await client.beta.messages.create(
        model=MODEL, max_tokens=100, messages=messages, tools=[CODE_TOOL],  # type: ignore[arg-type]
        context_management=edits, betas=["context-management-2025-06-27"],  # type: ignore[arg-type,list-item]
    )
    [applied] = message.context_management.applied_edits  # type: ignore[union-attr]
    assert applied.type == "clear_tool_uses_20250919"
    assert applied.cleared_tool_uses == 2 and applied.cleared_input_tokens > 15_000
    billed = message.usage.input_tokens
    assert billed < 35_000
    counted = await client.beta.messages.count_tokens(
        model=MODEL, messages=messages, tools=[CODE_TOOL], context_management=edits,  # type: ignore[arg-type]
        betas=["context-management-2025-06-27"],  # type: ignore[list-item]
    )
    assert counted.input_tokens == billed
