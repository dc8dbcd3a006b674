"""Mentions, follow-ups in the same container, DMs, files back, long answers, pause_turn."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.config import Settings
from tests.conftest import BotServer, container_of, running_bot, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"


async def test_mention_answers_in_the_thread_with_the_code_execution_tool(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(Reply([text("The answer is 42.")]))

    await bot.send_event(mention_event("what is 6*7?", channel=CHANNEL, user="U1", ts="1700000001.000100"))
    await bot.wait_for(lambda: "The answer is 42." in thread_text(slack, CHANNEL, "1700000001.000100"))
    await bot.idle()

    [request] = claude_api.requests
    assert request["model"] == bot.settings.anthropic_model
    assert request["tools"][0] == {"type": "code_execution_20260521", "name": "code_execution"}
    assert [tool["name"] for tool in request["tools"][1:]] == ["web_fetch"]  # WEB_SEARCH is off by default
    assert container_of(request) is None and len(request["container"]["skills"]) == 4
    assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": said_by("U1", "what is 6*7?")}]}]
    assert request["stream"] is True
    # Nothing was posted outside the thread.
    assert all(message["thread_ts"] == "1700000001.000100" for message in slack.messages)


async def test_progress_is_visible_before_the_model_answers(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(Reply([text("done")], delay=1.5))

    await bot.send_event(mention_event("slow one", channel=CHANNEL, user="U1", ts="1700000002.000100"))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    # The reply exists while the model is still working on it.
    await bot.wait_for(lambda: len(slack.thread(CHANNEL, "1700000002.000100")) == 1, timeout=1.0)
    assert "done" not in thread_text(slack, CHANNEL, "1700000002.000100")
    await bot.wait_for(lambda: "done" in thread_text(slack, CHANNEL, "1700000002.000100"))


async def test_follow_up_continues_in_the_same_container_with_full_history(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000003.000100"
    claude_api.enqueue(
        Reply([text("Writing it."), *code_run("echo hi > a.txt", stdout=""), text("Saved a.txt.")])
    )
    await bot.send_event(mention_event("save hi to a.txt", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "Saved a.txt." in thread_text(slack, CHANNEL, root))
    await bot.idle()
    container = container_of(claude_api.requests[0]) or next(iter(claude_api.containers))

    claude_api.enqueue(Reply([text("It says hi.")]))
    await bot.send_event(
        message_event("what is in a.txt?", channel=CHANNEL, user="U2", ts="1700000003.000200", thread_ts=root)
    )
    await bot.wait_for(lambda: "It says hi." in thread_text(slack, CHANNEL, root))

    follow_up = claude_api.requests[1]
    assert container_of(follow_up) == container
    first_user, assistant, second_user = follow_up["messages"]
    assert first_user["content"][0]["text"] == said_by("U1", "save hi to a.txt")
    kinds = [block["type"] for block in assistant["content"]]
    # The words before the run came back as a signed thinking block, and go back as received.
    assert kinds == ["thinking", "server_tool_use", "bash_code_execution_tool_result", "text"]
    assert assistant["content"][1]["input"] == {"command": "echo hi > a.txt"}
    # Two people talk in this thread: Claude is told who wrote what.
    assert second_user == {"role": "user", "content": [{"type": "text", "text": said_by("U2", "what is in a.txt?")}]}


async def test_threads_the_bot_is_not_part_of_are_ignored(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    await bot.send_event(
        message_event("chatting", channel=CHANNEL, user="U1", ts="1700000004.000200", thread_ts="1700000004.000100")
    )
    await bot.send_event(message_event("top level chatter", channel=CHANNEL, user="U1", ts="1700000004.000300"))
    await bot.idle()
    assert claude_api.requests == []
    assert slack.calls_to("chat.postMessage") == [] and slack.calls_to("chat.startStream") == []


async def test_files_the_code_creates_are_uploaded_into_the_thread(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000005.000100"
    chart = claude_api.add_file("chart.png", b"\x89PNG fake image", mime_type="image/png")
    report = claude_api.add_file("report.csv", b"a,b\n1,2\n", mime_type="text/csv")
    claude_api.enqueue(
        Reply([*code_run("python plot.py", file_ids=[chart, report]), text("Here are your files.")])
    )
    await bot.send_event(mention_event("plot it", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: len(slack.uploads) == 2)

    by_name = {upload["title"]: upload for upload in slack.uploads}
    assert set(by_name) == {"chart.png", "report.csv"}
    assert by_name["report.csv"]["content"] == b"a,b\n1,2\n"
    assert by_name["chart.png"]["content"] == b"\x89PNG fake image"
    assert all(upload["channel"] == CHANNEL and upload["thread_ts"] == root for upload in slack.uploads)


async def test_long_answers_are_split_and_nothing_is_cut(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    paragraphs = [f"Paragraph {n}: " + "word " * 60 for n in range(120)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) > 35_000
    claude_api.enqueue(Reply([text(answer)]))
    root = "1700000006.000100"
    await bot.send_event(mention_event("write a lot", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "Paragraph 119:" in thread_text(slack, CHANNEL, root))
    await bot.idle()

    replies = slack.thread_texts(CHANNEL, root)
    assert len(replies) >= 4
    assert all(len(reply) <= 12_000 for reply in replies)
    joined = " ".join(" ".join(replies).split())
    for paragraph in paragraphs:
        assert " ".join(paragraph.split()) in joined


async def test_dm_top_level_is_one_conversation_and_dm_threads_are_their_own(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    dm = "D1"
    claude_api.enqueue(Reply([text("first")]), Reply([text("second")]), Reply([text("in a thread")]))
    await bot.send_event(message_event("hello", channel=dm, user="U1", ts="1700000007.000100", channel_type="im"))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()
    await bot.send_event(message_event("again", channel=dm, user="U1", ts="1700000007.000200", channel_type="im"))
    await bot.wait_for(lambda: len(claude_api.requests) == 2)
    await bot.idle()
    await bot.send_event(
        message_event(
            "side question", channel=dm, user="U1", ts="1700000007.000300", thread_ts="1700000007.000100",
            channel_type="im",
        )
    )
    await bot.wait_for(lambda: len(claude_api.requests) == 3)
    await bot.idle()

    first, second, threaded = claude_api.requests
    assert container_of(first) is None and container_of(second) == next(iter(claude_api.containers))
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert container_of(threaded) is None
    assert [m["role"] for m in threaded["messages"]] == ["user"]
    # Top-level DM answers are top-level; the DM thread's answer is in that thread.
    top_level = [m for m in slack.messages if m["channel"] == dm and not m.get("thread_ts")]
    assert {"first", "second"} <= {slack.rendered_text(m).strip() for m in top_level}
    assert "in a thread" in thread_text(slack, dm, "1700000007.000100")


async def test_pause_turn_is_continued_until_the_turn_ends(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(
        Reply([text("Starting. "), *code_run("sleep 100")], stop_reason="pause_turn"),
        Reply([*code_run("echo done", stdout="done")], stop_reason="pause_turn"),
        Reply([text("All finished.")]),
    )
    root = "1700000008.000100"
    await bot.send_event(mention_event("long job", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "All finished." in thread_text(slack, CHANNEL, root))
    await bot.idle()

    assert len(claude_api.requests) == 3
    first_container = next(iter(claude_api.containers))
    for continuation in claude_api.requests[1:]:
        assert container_of(continuation) == first_container
        assert continuation["messages"][-1]["role"] == "assistant"
    paused = claude_api.requests[2]["messages"][-1]["content"]
    assert [block["type"] for block in paused] == [
        "thinking", "server_tool_use", "bash_code_execution_tool_result",
        "server_tool_use", "bash_code_execution_tool_result",
    ]
    assert "All finished." in thread_text(slack, CHANNEL, root)
    [reply] = [m for m in slack.thread(CHANNEL, root) if m.get("stream")]
    assert [task.get("details") for task in slack.task_updates(reply).values()][0] == "Starting."


async def test_many_threads_run_concurrently(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.responder = lambda request: Reply([text("answered")], delay=0.4)
    roots = [f"1700000009.{n:06d}" for n in range(1, 9)]
    await asyncio.gather(
        *(bot.send_event(mention_event(f"job {n}", channel=CHANNEL, user="U1", ts=root)) for n, root in enumerate(roots))
    )
    await bot.wait_for(lambda: all("answered" in thread_text(slack, CHANNEL, root) for root in roots))
    assert len(claude_api.requests) == len(roots)
    assert claude_api.max_in_flight > 1


async def test_a_mention_late_in_a_thread_sees_what_was_said_before(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000010.000100"
    slack.users["U2"] = {"profile": {"display_name": "Dana", "real_name": "Dana Scully"}}
    slack.add_message(CHANNEL, "Deploy failed: disk full on db-3", user="UALERT", ts=root)
    slack.add_message(CHANNEL, "Again? That's the third time", user="U2", ts="1700000010.000200", thread_ts=root)
    mention = mention_event("what happened here?", channel=CHANNEL, user="U1", ts="1700000010.000300", thread_ts=root)
    await bot.send_event(mention)
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()

    context, question = claude_api.requests[0]["messages"][0]["content"]
    assert context["text"].splitlines()[1:] == [
        "ualert: Deploy failed: disk full on db-3",
        "Dana: Again? That's the third time",
    ]
    assert question == {"type": "text", "text": said_by("U1", "what happened here?")}

    # Follow-ups carry the history instead; the thread is not read again.
    claude_api.enqueue(Reply([text("more")]))
    await bot.send_event(
        message_event("and now?", channel=CHANNEL, user="U1", ts="1700000010.000400", thread_ts=root)
    )
    await bot.wait_for(lambda: len(claude_api.requests) == 2)
    assert len(slack.calls_to("conversations.replies")) == 1
    assert claude_api.requests[1]["messages"][-1]["content"] == [{"type": "text", "text": said_by("U1", "and now?")}]


async def test_code_reaches_claude_as_typed_not_as_slack_escapes_it(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    # Slack sends `&`, `<` and `>` as entities in message text.
    typed = "run `python -c 'print(1 &lt; 2 &amp;&amp; 3 &gt; 2)'` and ping <@U2>"
    await bot.send_event(mention_event(typed, channel=CHANNEL, user="U1", ts="1700000011.000100"))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()
    assert claude_api.requests[0]["messages"][0]["content"][0]["text"] == said_by(
        "U1", "run `python -c 'print(1 < 2 && 3 > 2)'` and ping <@U2>"
    )


async def test_the_code_execution_tool_version_and_model_are_settings(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    custom = replace(settings, code_execution_tool="code_execution_20260120", anthropic_model="claude-opus-5")
    async with running_bot(custom, slack) as bot:
        await bot.send_event(mention_event("hi", channel=CHANNEL, user="U1", ts="1700000012.000100"))
        await bot.wait_for(lambda: len(claude_api.requests) == 1)
        await bot.idle()
    [request] = claude_api.requests
    assert request["tools"][0] == {"type": "code_execution_20260120", "name": "code_execution"}
    assert request["model"] == "claude-opus-5"


async def test_a_mention_late_in_a_long_thread_reads_its_most_recent_messages(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000013.000100"
    slack.add_message(CHANNEL, "ALERT: queue backlog on worker-7", user="UALERT", ts=root)
    for n in range(1, 400):
        slack.add_message(CHANNEL, f"update {n:03d}: " + "still looking " * 3, user=f"U{n % 3 + 2}",
                          ts=f"1700000013.{n + 100:06d}", thread_ts=root)
    # A message after the mention is not context for it.
    slack.add_message(CHANNEL, "later news", user="U2", ts="1700000013.900000", thread_ts=root)
    mention = mention_event("what is the latest?", channel=CHANNEL, user="U1", ts="1700000013.800000", thread_ts=root)
    await bot.send_event(mention)
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()

    context = claude_api.requests[0]["messages"][0]["content"][0]["text"]
    lines = context.splitlines()[1:]
    assert lines[0] == "ualert: ALERT: queue backlog on worker-7"  # the thread's start stays
    assert lines[1] == "…(earlier messages left out)"
    assert lines[-1].startswith("u2: update 399:")  # the most recent message before the mention
    assert "update 001:" not in context and "later news" not in context
    assert len(context) <= 8_200
    # Every page Slack sent was read, oldest first, and bounded by the mention's ts.
    calls = slack.calls_to("conversations.replies")
    assert len(calls) > 1 and all(call["latest"] == "1700000013.800000" for call in calls)


async def test_a_mention_of_another_user_whose_id_starts_like_the_bots_is_not_a_mention(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    await bot.send_event(message_event("<@UBOT2> can you look?", channel=CHANNEL, user="U1", ts="1700000014.000100"))
    await bot.send_event(
        message_event("<@UBOT2> and here?", channel=CHANNEL, user="U1", ts="1700000014.000300",
                      thread_ts="1700000014.000200")
    )
    await bot.idle()
    assert claude_api.requests == []
    assert slack.calls_to("chat.startStream") == [] and slack.calls_to("chat.postMessage") == []
