"""Live progress: streamed replies with a step per code run, the fallback, assistant threads."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

from bot.config import Settings
from bot.model.tools import tool_sources
from bot.outbound.state import Step
from tests.conftest import BotServer, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import ErrorReply, Reply, code_error, code_run, file_edit, text
from tests.fakes.slack_api import event_body, mention_event, message_event

CHANNEL = "C1"


def stream_chunks(slack: FakeSlack) -> list[dict[str, Any]]:
    """Every chunk sent through the streaming methods, in order."""
    chunks: list[dict[str, Any]] = []
    for call in slack.calls:
        if call.method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
            chunks.extend(call.args.get("chunks") or [])
    return chunks


async def test_answer_is_streamed_with_a_step_per_code_run(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000401.000100"
    claude_api.enqueue(
        Reply(
            [
                text("Let me compute that. "),
                *code_run("python -c 'print(6*7)'", stdout="42\n", tool_id="srvtoolu_a"),
                *file_edit("notes.md", "# notes", tool_id="srvtoolu_b"),
                *code_error("sleep 999", tool_id="srvtoolu_c"),
                text("The result is **42**."),
            ]
        )
    )
    await bot.send_event(mention_event("compute", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: bool(slack.calls_to("chat.stopStream")))
    await bot.idle()

    [start] = slack.calls_to("chat.startStream")
    assert start["channel"] == CHANNEL and start["thread_ts"] == root
    assert start["recipient_user_id"] == "U1" and start["recipient_team_id"] == "T1"
    assert slack.calls_to("chat.postMessage") == []  # no fallback needed

    steps = [chunk for chunk in stream_chunks(slack) if chunk["type"] == "task_update"]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        by_id.setdefault(step["id"], []).append(step)
    assert list(by_id) == ["srvtoolu_a", "srvtoolu_b", "srvtoolu_c"]
    assert [s["status"] for s in by_id["srvtoolu_a"]] == ["in_progress", "complete"]
    assert by_id["srvtoolu_a"][0]["title"] == "python -c 'print(6*7)'"
    assert by_id["srvtoolu_a"][0]["details"] == "Let me compute that."  # the words before it (thinking)
    assert by_id["srvtoolu_a"][-1]["output"] == "42"
    assert by_id["srvtoolu_b"][0]["title"] == "create notes.md"
    assert by_id["srvtoolu_c"][-1]["status"] == "error"
    assert "execution time exceeded" in by_id["srvtoolu_c"][-1]["output"]

    # The answer is the text after the runs, and the message closes with a status.
    answer = thread_text(slack, CHANNEL, root)
    assert "The result is **42**." in answer and "Let me compute that." not in answer
    [stop] = slack.calls_to("chat.stopStream")
    assert "3 code runs, 1 with errors" in str(stop.get("blocks"))

    statuses = [call["status"] for call in slack.calls_to("assistant.threads.setStatus")]
    assert "is running code…" in statuses


async def test_streaming_is_buffered_not_one_call_per_token(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    words = [f"word{n} " for n in range(600)]
    claude_api.enqueue(Reply([text("".join(words))], chunk_delay=0.0))
    root = "1700000402.000100"
    await bot.send_event(mention_event("talk", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: bool(slack.calls_to("chat.stopStream")))
    appends = slack.calls_to("chat.appendStream")
    assert len(appends) < 30
    assert "word599" in thread_text(slack, CHANNEL, root)


async def test_fallback_when_streaming_is_refused(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.fail("chat.startStream", error="not_allowed_token_type", times=-1)
    claude_api.enqueue(
        Reply([*code_run("ls", stdout="a.txt", tool_id="srvtoolu_x"), text("Found **a.txt**.")], chunk_delay=0.3)
    )
    root = "1700000403.000100"
    await bot.send_event(mention_event("list", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "Found **a.txt**." in thread_text(slack, CHANNEL, root))
    await bot.idle()
    [reply] = slack.thread(CHANNEL, root)
    assert not reply.get("stream")
    final_blocks = slack.calls_to("chat.update")[-1]["blocks"]
    assert {"type": "markdown", "text": "Found **a.txt**."} in final_blocks
    assert "✅ `ls`" in str(final_blocks)
    # While code ran and no text had come yet, the progress edit said "working" once.
    progress = [str(call["blocks"]) for call in slack.calls_to("chat.update")[:-1]]
    assert progress and all(edit.count("Working on it") == 1 for edit in progress)


async def test_fallback_when_slack_ends_the_stream_midway(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    def end_streams_then_answer(request: dict) -> Reply:
        slack.end_streams()  # Slack closed the stream server-side while Claude worked
        return Reply([*code_run("echo hi", stdout="hi"), text("part two.")])

    claude_api.enqueue(Reply([text("part one. " * 80)], stop_reason="pause_turn"))
    claude_api.responder = end_streams_then_answer
    root = "1700000404.000100"
    await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: any("part two." in t for t in slack.thread_texts(CHANNEL, root)))
    await bot.idle()
    # The message that was streaming is edited to the whole answer: no duplicate, no empty message.
    [reply] = slack.thread(CHANNEL, root)
    assert reply["ts"] == slack.calls_to("chat.update")[-1]["ts"]
    final = slack.calls_to("chat.update")[-1]["blocks"]
    markdown = next(block["text"] for block in final if block["type"] == "markdown")
    assert markdown.startswith("part one.") and markdown.endswith("part two.")


async def test_fallback_from_a_stream_slack_still_holds_open_ends_it_first(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    # chat.update on a message that is still streaming is refused (streaming_state_conflict).
    slack.fail("chat.appendStream", error="internal_error", times=-1)
    claude_api.enqueue(Reply([*code_run("echo hi", stdout="hi"), text("part one. " * 80), text("part two.")]))
    root = "1700000410.000100"
    await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: any("part two." in t for t in slack.thread_texts(CHANNEL, root)))
    await bot.idle()
    [reply] = slack.thread(CHANNEL, root)
    assert not reply["streaming"] and reply["ts"] == slack.calls_to("chat.update")[-1]["ts"]
    markdown = next(block["text"] for block in reply["blocks"] if block["type"] == "markdown")
    assert markdown.startswith("part one.") and markdown.endswith("part two.")


async def test_an_answer_arrives_although_slack_rate_limits_now_and_then(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.rate_limit_every = 3
    claude_api.enqueue(Reply([text("first part. " * 60), *code_run("ls", stdout="a"), text("the end.")]))
    root = "1700000411.000100"
    await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "the end." in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert slack.rate_limited, "Slack answered 429 at least once"
    assert len(slack.thread(CHANNEL, root)) == 1


async def test_streaming_can_be_turned_off(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, slack_streaming=False), slack) as bot:
        root = "1700000405.000100"
        await bot.send_event(mention_event("hello", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))
        await bot.idle()
        assert slack.calls_to("chat.startStream") == []
        assert slack.calls_to("chat.postMessage")[0]["thread_ts"] == root


async def test_assistant_thread_gets_prompts_title_status_and_an_answer(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    dm, thread_ts = "D5", "1700000406.000100"
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1", "context": {}, "channel_id": dm, "thread_ts": thread_ts},
        "event_ts": "1700000406.000050",
    }
    status, _ = await bot.post(event_body(started), "application/json")
    assert status == 200
    await bot.wait_for(lambda: bool(slack.calls_to("assistant.threads.setSuggestedPrompts")))
    [prompts] = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert prompts["channel_id"] == dm and prompts["thread_ts"] == thread_ts
    assert len(prompts["prompts"]) >= 2
    assert "sandbox" in thread_text(slack, dm, thread_ts)

    claude_api.enqueue(Reply([text("Primes: 2, 3, 5.")]))
    await bot.send_event(
        message_event("Compute the first three primes please", channel=dm, user="U1", ts="1700000406.000200",
                      thread_ts=thread_ts, channel_type="im")
    )
    await bot.wait_for(lambda: "Primes: 2, 3, 5." in thread_text(slack, dm, thread_ts))
    await bot.idle()
    [title] = slack.calls_to("assistant.threads.setTitle")
    assert title["title"] == "Compute the first three primes please"
    assert any(call["thread_ts"] == thread_ts for call in slack.calls_to("assistant.threads.setStatus"))

    # A follow-up in the same assistant thread keeps the container and does not retitle.
    claude_api.enqueue(Reply([text("Next: 7.")]))
    await bot.send_event(
        message_event("and the next?", channel=dm, user="U1", ts="1700000406.000300", thread_ts=thread_ts,
                      channel_type="im")
    )
    await bot.wait_for(lambda: "Next: 7." in thread_text(slack, dm, thread_ts))
    assert len(slack.calls_to("assistant.threads.setTitle")) == 1
    assert [m["role"] for m in claude_api.requests[-1]["messages"]] == ["user", "assistant", "user"]


async def test_a_stream_that_fails_mid_run_closes_the_open_step_and_explains(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    overloaded = ErrorReply(529, "overloaded_error", "Overloaded")
    for attempt in ("", "_2", "_3"):  # asked again twice, as the SDK retries, then given up
        tool_use, _result = code_run("python train.py", tool_id=f"srvtoolu_open{attempt}")
        claude_api.enqueue(Reply([text("Training now. "), tool_use], stream_error=overloaded))
    root = "1700000407.000100"
    await bot.send_event(mention_event("train it", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: bool(slack.calls_to("chat.stopStream")))
    await bot.idle()

    updates = [c for c in stream_chunks(slack) if c["type"] == "task_update" and c["id"] == "srvtoolu_open"]
    assert [u["status"] for u in updates] == ["in_progress", "error"]
    said = thread_text(slack, CHANNEL, root)
    assert "overloaded" in said.lower() and len(claude_api.requests) == 3
    assert updates[0]["details"] == "Training now."
    assert "Stopped early" in str(slack.calls_to("chat.stopStream")[0].get("blocks"))
    # What was asked stays, and nothing half-finished: no code run without its result.
    claude_api.enqueue(Reply([text("retrying")]))
    await bot.send_event(message_event("again", channel=CHANNEL, user="U1", ts="1700000407.000200", thread_ts=root))
    await bot.wait_for(lambda: "retrying" in thread_text(slack, CHANNEL, root))
    first, answer, _again = claude_api.requests[-1]["messages"]
    assert "train it" in str(first["content"]) and "server_tool_use" not in str(answer["content"])


async def test_a_title_slack_refuses_still_answers_slack_with_200(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    dm, thread_ts = "D6", "1700000412.000100"
    slack.fail("assistant.threads.setTitle", error="ratelimited", times=-1)
    claude_api.enqueue(Reply([text("Answered all the same.")]))
    status = await bot.send_event(
        message_event("title me", channel=dm, user="U1", ts="1700000412.000200", thread_ts=thread_ts, channel_type="im")
    )
    assert status == 200  # a 5xx would have Slack send the message again
    await bot.wait_for(lambda: "Answered all the same." in thread_text(slack, dm, thread_ts))


async def test_plan_view_shows_the_code_runs_together_under_one_plan(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, task_display="plan"), slack) as bot:
        root = "1700000420.000100"
        claude_api.enqueue(Reply([*code_run("python load.py", stdout="loaded"), *code_run("python fit.py", stdout="r2=0.9"),
                                  text("Fitted.")]))
        await bot.send_event(mention_event("fit it", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: bool(slack.calls_to("chat.stopStream")))
        await bot.idle()
    [start] = slack.calls_to("chat.startStream")
    assert start["task_display_mode"] == "plan"
    plans = [c["title"] for c in stream_chunks(slack) if c["type"] == "plan_update"]
    assert plans == ["Running code", "Running code: 2 steps"]
    [reply] = slack.thread(CHANNEL, root)
    assert {t["status"] for t in slack.task_updates(reply).values()} == {"complete"}


def test_a_step_names_the_pages_its_tool_read_as_sources() -> None:
    result = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "url": "https://example.com/a", "title": "Page <!channel> A"},
        {"type": "web_search_result", "url": "https://example.com/b", "title": "B"},
        {"type": "web_search_result", "url": "https://example.com/a", "title": "A again"},
    ]}
    sources = tool_sources(result)
    assert sources == [("https://example.com/a", "Page <!channel> A"), ("https://example.com/b", "B")]
    chunk = Step("srvtoolu_1", "web search", status="complete", sources=sources).chunk().to_dict()
    assert [s["url"] for s in chunk["sources"]] == ["https://example.com/a", "https://example.com/b"]
    assert "<!channel>" not in chunk["sources"][0]["text"]
    assert tool_sources({"type": "bash_code_execution_tool_result", "content": {"stdout": "x"}}) == []


async def test_a_stream_stop_that_slack_answers_with_a_plain_text_500_is_no_crash(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack's edge answers a 5xx with text, not JSON: the error has no `error` field to read."""
    root = "1700000950.000100"
    # The SDK tries three times: all three answered with text.
    slack.fail("chat.stopStream", error="internal error", status=500, times=3, text=True)
    with caplog.at_level(logging.WARNING):
        await bot.mention_and_wait(claude_api, Reply([text("All done here.")]), "go", root=root, shows="All done")
        await bot.idle()
    assert "went wrong" not in thread_text(slack, "C1", root)
    assert not [r for r in caplog.records if r.exc_info and "AttributeError" in repr(r.exc_info[1])]
    assert not [r for r in caplog.records if "turn for" in r.getMessage() and "failed" in r.getMessage()]
