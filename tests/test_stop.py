"""`!stop` and the Stop button: a running turn ends at once, what it said stays, nothing is lost."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import pytest

from bot.config import Settings
from bot.outbound.blocks import STOP_ACTION_ID, stop_button
from storage import ThreadKey
from tests.conftest import BotServer, long_running_reply, run_sql, running_bot, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import block_action_body, mention_event, message_event

CHANNEL = "C1"


def shows_stop_button(message: dict[str, Any], value: str) -> bool:
    return any(element.get("action_id") == STOP_ACTION_ID and element.get("value") == value
               for block in message.get("blocks") or [] if block.get("type") == "actions"
               for element in block.get("elements") or [])


def stop_buttons(slack: FakeSlack, root: str) -> list[tuple[dict[str, Any], str]]:
    """(message, button value) of every Stop button shown in the thread."""
    found = []
    for message in slack.thread(CHANNEL, root):
        for block in message.get("blocks") or []:
            for element in block.get("elements") or [] if block.get("type") == "actions" else []:
                if element.get("action_id") == STOP_ACTION_ID:
                    found.append((message, element["value"]))
    return found


async def press_stop(server: BotServer, message: dict[str, Any], value: str, user: str, channel: str = CHANNEL) -> str:
    """Press a Stop button as Slack sends it; returns the response_url the answer goes to."""
    response_url = server.slack.new_response_url()
    body = block_action_body(
        STOP_ACTION_ID, value, channel_id=channel, user_id=user, response_url=response_url,
        message_ts=message["ts"], message={"ts": message["ts"], "text": message.get("text", ""), "blocks": message["blocks"]},
    )
    status, _ = await server.post(body, "application/x-www-form-urlencoded")
    assert status == 200
    return response_url


async def test_bang_stop_ends_the_running_turn_and_keeps_what_it_said(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700002001.000100"
    async with running_bot(settings_on_each_store, slack) as server:
        await server.mention_and_wait(claude_api, long_running_reply("partial words"), "a long job", root=root, shows="partial words")
        await server.send_event(message_event("!stop", channel=CHANNEL, user="U2", ts="1700002001.000200", thread_ts=root))
        await server.wait_for(lambda: "Stopped by u2" in thread_text(slack, CHANNEL, root), timeout=5)
        await server.wait_for(
            lambda: server.runtime.metrics.registry.get_sample_value("threadbox_turns_total", {"outcome": "stopped"}) == 1
        )
        # The stopped request's input was paid for: it counts against budgets and in `!usage`.
        spent = await server.runtime.store.thread_usage(ThreadKey("T1", CHANNEL, root))
        [usage] = claude_api.usages
        assert spent.turns == 1 and spent.input_tokens == usage["input_tokens"] > 0
        claude_api.enqueue(Reply([text("next answer")]))
        await server.send_event(message_event("and now?", channel=CHANNEL, user="U1", ts="1700002001.000300", thread_ts=root))
        await server.wait_for(lambda: "next answer" in thread_text(slack, CHANNEL, root))
        await server.idle()

    texts = slack.thread_texts(CHANNEL, root)
    assert "partial words" in texts[0] and "Stopped by u2" in texts[0]
    assert "the end of it" not in thread_text(slack, CHANNEL, root)
    assert not [m for m in slack.thread(CHANNEL, root) if m.get("streaming")], "the stopped reply still streams"
    # `!stop` went to no model; the next message reads that the answer before it was stopped.
    assert len(claude_api.requests) == 2
    history = claude_api.requests[1]["messages"]
    assert history[0]["content"][0]["text"] == said_by("U1", "a long job")
    assert "u2 stopped this answer here" in json.dumps(history[1]["content"])
    assert history[2]["content"][-1]["text"] == said_by("U1", "and now?")


async def test_stop_with_nothing_running_says_so_once_and_costs_nothing(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    root = "1700002002.000100"
    await bot.mention_and_wait(claude_api, Reply([text("done quickly")]), "quick one", root=root, shows="done quickly")
    await bot.idle()

    # `@threadbox stop` arrives twice: as app_mention and as message.
    stop = mention_event("stop", channel=CHANNEL, user="U1", ts="1700002002.000200", thread_ts=root)
    await bot.send_event(stop)
    await bot.send_event(message_event(stop["text"], channel=CHANNEL, user="U1", ts=stop["ts"], thread_ts=root))
    await bot.wait_for(lambda: bool(slack.ephemerals))
    await bot.idle()
    assert [e["text"] for e in slack.ephemerals] == ["Nothing is running in this thread right now, so there is nothing to stop."]
    assert len(claude_api.requests) == 1
    assert len(slack.thread(CHANNEL, root)) == 1


async def test_the_stop_button_on_a_reply_that_is_not_streamed(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700002003.000100"
    async with running_bot(replace(settings, slack_streaming=False), slack) as server:
        claude_api.enqueue(long_running_reply("slow words"))
        await server.send_event(mention_event("a long job", channel=CHANNEL, user="U1", ts=root))
        await server.wait_for(lambda: bool(stop_buttons(slack, root)))
        [(message, value)] = stop_buttons(slack, root)
        assert message["ts"] == slack.thread(CHANNEL, root)[0]["ts"], "the button is on the reply itself"
        await server.wait_for(lambda: "slow words" in thread_text(slack, CHANNEL, root))
        await press_stop(server, message, value, "U1")
        await server.wait_for(lambda: "Stopped by u1" in thread_text(slack, CHANNEL, root), timeout=5)
        await server.idle()

    assert stop_buttons(slack, root) == [], "the finished reply still offers Stop"
    assert "slow words" in thread_text(slack, CHANNEL, root)
    assert "the end of it" not in thread_text(slack, CHANNEL, root)
    assert len(slack.thread(CHANNEL, root)) == 1


async def stop_in_slack_and_wait(server: BotServer, root: str, *, event: str | None) -> dict[str, Any]:
    """The person presses Slack's own stop on the streaming reply (and Slack sends `event`, if
    any); returns the reply once its turn has ended."""
    slack = server.slack
    await server.wait_for(lambda: "streamed words" in thread_text(slack, CHANNEL, root))
    [reply] = slack.thread(CHANNEL, root)
    slack.stop_by_user(CHANNEL, reply["ts"])
    if event == "message_stream_stopped":
        await server.send_event({"type": event, "channel": CHANNEL, "ts": reply["ts"], "thread_ts": root,
                                 "user": "U1", "event_ts": reply["ts"]})
    elif event == "agent_session_stopped":  # the session names its thread, not the message
        await server.send_event({"type": event, "channel_id": CHANNEL, "thread_ts": root, "user_id": "U1"})
    await server.wait_for(lambda: server.runtime.metrics.registry.get_sample_value(
        "threadbox_turns_total", {"outcome": "stopped"}) == 1, timeout=5)
    await server.idle()
    return reply


@pytest.mark.parametrize(
    "event", ["message_stream_stopped", "agent_session_stopped", None], ids=["stream-event", "session-event", "refused-append"]
)
async def test_slacks_own_stop_ends_the_turn_as_bang_stop_does(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, event: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    root = "1700002004.000100"
    claude_api.enqueue(long_running_reply("streamed words"))
    await bot.send_event(mention_event("a long job", channel=CHANNEL, user="U1", ts=root))
    reply = await stop_in_slack_and_wait(bot, root, event=event)
    requested = [r for r in caplog.records if r.name == "bot.audit" and r.getMessage().startswith("stop_requested")]
    assert len(requested) == (1 if event else 0)  # the event itself asked for the stop, as `!stop` does

    [start] = slack.calls_to("chat.startStream")
    assert start["is_stoppable"] is True, "the stream offers Slack's own stop control"
    assert len(slack.thread(CHANNEL, root)) == 1 and slack.calls_to("chat.delete") == []
    shown = slack.rendered_text(slack.message(CHANNEL, reply["ts"]) or {})
    assert "streamed words" in shown and "the end of it" not in shown
    assert not [c for c in slack.calls_to("chat.update") if c.get("ts") == reply["ts"]], "the stopped reply was rewritten"
    spent = await bot.runtime.store.thread_usage(ThreadKey("T1", CHANNEL, root))
    assert spent.turns == 1 and spent.input_tokens > 0  # what the stopped request used is booked

    claude_api.enqueue(Reply([text("next answer")]))
    await bot.send_event(message_event("and now?", channel=CHANNEL, user="U1", ts="1700002004.000300", thread_ts=root))
    await bot.wait_for(lambda: "next answer" in thread_text(slack, CHANNEL, root))
    assert "u1 stopped this answer here" in json.dumps(claude_api.requests[-1]["messages"][1]["content"])


async def test_without_slacks_stop_control_the_stream_goes_on_and_bang_stop_still_works(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.subscribed_events.remove("message_stream_stopped")  # an app whose manifest lacks the event
    root = "1700002009.000100"
    claude_api.enqueue(long_running_reply("streamed words"))
    await bot.send_event(mention_event("a long job", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "streamed words" in thread_text(slack, CHANNEL, root))
    await bot.send_event(message_event("!stop", channel=CHANNEL, user="U1", ts="1700002009.000200", thread_ts=root))
    await bot.wait_for(lambda: "Stopped by u1" in thread_text(slack, CHANNEL, root), timeout=5)
    await bot.idle()
    assert [bool(c.get("is_stoppable")) for c in slack.calls_to("chat.startStream")] == [True, False]
    assert len(slack.thread(CHANNEL, root)) == 1

    # Learned once for the workspace: the next answer asks for no stop control.
    await bot.mention_and_wait(claude_api, Reply([text("quick")]), "quick one", root="1700002009.000300", shows="quick")
    assert [bool(c.get("is_stoppable")) for c in slack.calls_to("chat.startStream")] == [True, False, False]


async def test_no_answer_posts_a_message_only_to_delete_it(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700002005.000100"
    await bot.mention_and_wait(claude_api, long_running_reply("slow"), "a long one", root=root, shows="the end of it")
    await bot.idle()
    assert slack.calls_to("chat.delete") == [] and len(slack.thread(CHANNEL, root)) == 1
    assert len(slack.calls_to("chat.postMessage")) == 0


async def test_a_stale_stop_button_says_the_answer_is_over(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    """A reply whose process died mid-turn still shows its Stop button: it stops nothing now."""
    root = "1700002006.000100"
    await bot.mention_and_wait(claude_api, Reply([text("all done")]), "quick one", root=root, shows="all done")
    await bot.idle()
    await bot.runtime.slack.chat_postMessage(
        channel=CHANNEL, thread_ts=root, text="Working on it…", blocks=[stop_button(
            json.dumps({"item": 1, "channel": CHANNEL, "thread_ts": root}))],
    )
    [(offer, value)] = stop_buttons(slack, root)
    response_url = await press_stop(bot, offer, value, "U1")
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    await bot.idle()
    assert "already finished" in json.dumps(slack.responses[response_url])


async def test_a_stopped_turn_whose_process_died_is_not_run_again(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700002007.000100"
    async with running_bot(settings_on_each_store, slack) as server:
        await server.mention_and_wait(claude_api, long_running_reply("partial words"), "a long job", root=root, shows="partial words")
        # The stop is recorded, and the process dies before it acts on it.
        await run_sql(settings_on_each_store.database_url, "UPDATE queue SET stop_requested_by = 'U2' WHERE state = 'running'")
        await server.kill()

    async with running_bot(settings_on_each_store, slack) as restarted:
        await restarted.wait_for(lambda: "Stopped by u2" in thread_text(slack, CHANNEL, root))
        await restarted.idle()
    assert len(claude_api.requests) == 1, "a stopped turn ran again after a restart"
    [reply] = slack.thread(CHANNEL, root)
    assert not reply.get("streaming") and "partial words" in slack.rendered_text(reply)



async def test_stop_at_the_top_level_of_a_dm_by_word_and_by_button(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    dm = "D1"

    def replies() -> list[dict[str, Any]]:
        return [m for m in slack.messages if m["channel"] == dm and not m.get("thread_ts") and m.get("bot_id")]

    claude_api.enqueue(long_running_reply("first words"))
    await bot.send_event(message_event("a long job", channel=dm, user="U1", ts="1700002008.000100", channel_type="im"))
    await bot.wait_for(lambda: any("first words" in slack.rendered_text(m) for m in replies()))
    await bot.send_event(message_event("!stop", channel=dm, user="U1", ts="1700002008.000200", channel_type="im"))
    await bot.wait_for(lambda: any("Stopped by u1" in slack.rendered_text(m) for m in replies()), timeout=5)
    await bot.idle()

    # A DM's top level is not a thread: the reply is an ordinary message carrying the button.
    claude_api.enqueue(long_running_reply("second words"))
    await bot.send_event(message_event("another", channel=dm, user="U1", ts="1700002008.000300", channel_type="im"))
    button = json.dumps({"item": 2, "channel": dm, "thread_ts": ""})
    await bot.wait_for(lambda: any(
        "second words" in slack.rendered_text(m) and shows_stop_button(m, button) for m in replies()))
    [reply] = [m for m in replies() if "second words" in slack.rendered_text(m)]
    await press_stop(bot, reply, button, "U1", channel=dm)
    await bot.wait_for(lambda: "Stopped by u1" in slack.rendered_text(slack.message(dm, reply["ts"]) or {}), timeout=5)
    await bot.idle()
    assert len(claude_api.requests) == 2
    assert "the end of it" not in " ".join(slack.rendered_text(m) for m in replies())
