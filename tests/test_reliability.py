"""Exactly-once answers, ordering, restarts, API failures and hostile input."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from bot.config import Settings
from tests.conftest import BotServer, container_of, running_bot, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import ErrorReply, Reply, code_run, text
from tests.fakes.slack_api import event_body, mention_event, message_event

CHANNEL = "C1"


async def test_slack_retries_and_twin_events_produce_one_answer(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000101.000100"
    mention = mention_event("hi there", channel=CHANNEL, user="U1", ts=root)
    twin = message_event(mention["text"], channel=CHANNEL, user="U1", ts=root)
    assert await bot.send_event(mention, event_id="EvA") == 200
    assert await bot.send_event(mention, event_id="EvA", retry_num=1) == 200
    assert await bot.send_event(twin, event_id="EvB") == 200
    assert await bot.send_event(mention, event_id="EvA", retry_num=2) == 200
    await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert len(claude_api.requests) == 1
    assert len(slack.thread(CHANNEL, root)) == 1


async def test_a_retry_after_a_restart_is_still_recognised(
    bot: BotServer, settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000102.000100"
    mention = mention_event("once only", channel=CHANNEL, user="U1", ts=root)
    await bot.send_event(mention, event_id="EvR")
    await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))
    await bot.stop()

    async with running_bot(settings, slack) as restarted:
        assert await restarted.send_event(mention, event_id="EvR", retry_num=3) == 200
        await restarted.idle()
        assert len(claude_api.requests) == 1


async def test_own_messages_and_other_bots_are_never_answered(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000103.000100"
    await bot.send_event(mention_event("start", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))
    await bot.idle()

    own = message_event("ok", channel=CHANNEL, user="UBOT", ts="1700000103.000200", thread_ts=root, bot_id="BBOT")
    other_bot = message_event(
        "<@UBOT> ping", channel=CHANNEL, user="UOTHER", ts="1700000103.000300", thread_ts=root, bot_id="BOTHER"
    )
    bot_message = message_event(
        "hello", channel=CHANNEL, user="UOTHER", ts="1700000103.000400", thread_ts=root, subtype="bot_message"
    )
    edit = message_event("edited", channel=CHANNEL, user="U1", ts="1700000103.000500", thread_ts=root, subtype="message_changed")
    for event in (own, other_bot, bot_message, edit):
        assert await bot.send_event(event) == 200
    await bot.send_event(message_event("hi", channel="D9", user="UBOT", ts="1700000103.000600", channel_type="im"))
    await bot.idle()
    assert len(claude_api.requests) == 1


async def test_two_quick_messages_in_a_thread_are_answered_in_order_one_at_a_time(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000104.000100"
    claude_api.enqueue(Reply([text("first answer")]))
    await bot.send_event(mention_event("set up", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "first answer" in thread_text(slack, CHANNEL, root))
    await bot.idle()

    claude_api.enqueue(Reply([text("answer A")], delay=0.5), Reply([text("answer B")], delay=0.1))
    await bot.send_event(message_event("question A", channel=CHANNEL, user="U1", ts="1700000104.000200", thread_ts=root))
    await bot.send_event(message_event("question B", channel=CHANNEL, user="U2", ts="1700000104.000300", thread_ts=root))
    await bot.wait_for(lambda: "answer B" in thread_text(slack, CHANNEL, root))
    await bot.idle()

    a_request, b_request = claude_api.requests[1:]
    assert a_request["messages"][-1]["content"][0]["text"] == said_by("U1", "question A")
    assert b_request["messages"][-1]["content"][0]["text"] == said_by("U2", "question B")
    # B was sent only after A's answer was stored: B's history holds A's exchange.
    assert [m["role"] for m in b_request["messages"]] == ["user", "assistant"] * 2 + ["user"]
    assert b_request["messages"][-2]["content"][0]["text"] == "answer A"
    assert max(claude_api.max_concurrent_per_container.values()) == 1
    # B showed at once that it was waiting, and stopped showing it when its turn came.
    [queued] = slack.calls_to("reactions.add")
    assert (queued["timestamp"], queued["name"]) == ("1700000104.000300", "hourglass_flowing_sand")
    assert slack.calls_to("reactions.remove")[0]["timestamp"] == "1700000104.000300"
    assert slack.reactions == []
    texts = slack.thread_texts(CHANNEL, root)
    assert texts.index(next(t for t in texts if "answer A" in t)) < texts.index(next(t for t in texts if "answer B" in t))


async def test_a_restarted_bot_continues_every_thread_in_its_container(
    bot: BotServer, settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000105.000100"
    claude_api.enqueue(Reply([*code_run("touch state"), text("made state")]))
    await bot.send_event(mention_event("make state", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "made state" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    await bot.kill()
    container = next(iter(claude_api.containers))

    async with running_bot(settings, slack) as restarted:
        claude_api.enqueue(Reply([text("still here")]))
        await restarted.send_event(
            message_event("still there?", channel=CHANNEL, user="U1", ts="1700000105.000200", thread_ts=root)
        )
        await restarted.wait_for(lambda: "still here" in thread_text(slack, CHANNEL, root))
        assert container_of(claude_api.requests[-1]) == container
        assert len(claude_api.requests[-1]["messages"]) == 3


async def test_a_message_in_flight_when_the_process_dies_is_answered_after_restart(
    bot: BotServer, settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000106.000100"
    claude_api.enqueue(Reply([text("never delivered")], delay=30))
    await bot.send_event(mention_event("important", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.kill()

    claude_api.enqueue(Reply([text("delivered after restart")]))
    async with running_bot(settings, slack) as restarted:
        await restarted.wait_for(lambda: "delivered after restart" in thread_text(slack, CHANNEL, root))
        assert claude_api.requests[-1]["messages"][-1]["content"][0]["text"] == said_by("U1", "important")


async def test_api_errors_become_a_readable_message_and_the_bot_stays_up(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    overloaded = ErrorReply(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "10"})
    claude_api.enqueue(overloaded, overloaded, overloaded)
    root = "1700000108.000100"
    await bot.send_event(mention_event("try", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "overloaded" in thread_text(slack, CHANNEL, root).lower())
    await bot.idle()
    assert len(claude_api.requests) == 3  # the SDK retried twice before giving up

    claude_api.enqueue(ErrorReply(400, "invalid_request_error", "messages: text content blocks must be non-empty"))
    await bot.send_event(message_event("bad", channel=CHANNEL, user="U1", ts="1700000108.000200", thread_ts=root))
    await bot.wait_for(lambda: "must be non-empty" in thread_text(slack, CHANNEL, root))

    claude_api.enqueue(Reply([text("recovered")]))
    await bot.send_event(message_event("again", channel=CHANNEL, user="U1", ts="1700000108.000300", thread_ts=root))
    await bot.wait_for(lambda: "recovered" in thread_text(slack, CHANNEL, root))


async def test_refusal_and_max_tokens_are_explained(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(
        Reply([text("Partial ans")], stop_reason="max_tokens"),
        Reply([], stop_reason="refusal"),
        Reply([text("Reading…")], stop_reason="model_context_window_exceeded"),
    )
    await bot.send_event(mention_event("long", channel=CHANNEL, user="U1", ts="1700000109.000100"))
    await bot.wait_for(lambda: "length limit" in thread_text(slack, CHANNEL, "1700000109.000100"))
    assert "Partial ans" in thread_text(slack, CHANNEL, "1700000109.000100")
    await bot.send_event(mention_event("bad", channel=CHANNEL, user="U1", ts="1700000109.000200"))
    await bot.wait_for(lambda: "declined" in thread_text(slack, CHANNEL, "1700000109.000200"))
    await bot.send_event(mention_event("huge", channel=CHANNEL, user="U1", ts="1700000109.000300"))
    await bot.wait_for(lambda: "`!reset`" in thread_text(slack, CHANNEL, "1700000109.000300"))


async def test_oversized_messages_get_a_clear_answer_without_a_model_call(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000110.000100"
    await bot.send_event(mention_event("x" * 25_000, channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "the limit is 20,000" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert claude_api.requests == []


async def test_forged_and_stale_requests_are_refused(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    body = event_body(mention_event("forged", channel=CHANNEL, user="U1", ts="1700000111.000100"))
    status, _ = await bot.post(body, "application/json", secret="not-the-secret")
    assert status == 401
    status, _ = await bot.post(body, "application/json", timestamp=int(time.time()) - 600)
    assert status == 401
    status, _ = await bot.post(body, "application/json", signed=False)
    assert status == 401
    await bot.idle()
    assert claude_api.requests == [] and slack.messages == []


async def test_junk_payloads_never_crash_the_process(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    junk = [
        ("{not json", "application/json"),
        ("payload=%7Bbroken", "application/x-www-form-urlencoded"),
        (json.dumps({"type": "event_callback", "team_id": "T1", "event": {"type": "message"}}), "application/json"),
        (event_body({"type": "app_mention", "text": "<@UBOT> hi"}), "application/json"),
        (event_body({"type": "message", "channel": 5, "ts": None, "user": "U1"}), "application/json"),
        (json.dumps([1, 2, 3]), "application/json"),
        ("", "application/json"),
    ]
    for body, content_type in junk:
        status, _ = await bot.post(body, content_type)
        assert status < 500
    await bot.idle()
    assert claude_api.requests == []

    root = "1700000112.000100"
    await bot.send_event(mention_event("still alive?", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))


async def test_health_endpoint(bot: BotServer) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{bot.url}/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"ok": True}


async def test_a_turn_that_runs_past_its_deadline_ends_with_a_message_and_frees_the_thread(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    assert settings.turn_timeout_seconds == 15 * 60
    async with running_bot(replace(settings, turn_timeout_seconds=1), slack) as bot:
        root = "1700000120.000100"
        # The stream starts, then hangs.
        claude_api.enqueue(Reply([text("never arrives")], chunk_delay=30))
        await bot.send_event(mention_event("hang", channel=CHANNEL, user="U1", ts=root))
        await bot.send_event(message_event("!reset", channel=CHANNEL, user="U1", ts="1700000120.000200", thread_ts=root))
        await bot.wait_for(lambda: "ran longer than 1 second" in thread_text(slack, CHANNEL, root))
        # The reset that waited behind the turn runs now, not hours later.
        await bot.wait_for(lambda: "Fresh start" in thread_text(slack, CHANNEL, root))
        claude_api.enqueue(Reply([text("answered again")]))
        await bot.send_event(message_event("hello?", channel=CHANNEL, user="U1", ts="1700000120.000300", thread_ts=root))
        await bot.wait_for(lambda: "answered again" in thread_text(slack, CHANNEL, root))
