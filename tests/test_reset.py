"""Every reset form gives a fresh container and a fresh history, and says so in the thread."""

from __future__ import annotations

import json

import pytest

from bot.config import Settings
from tests.conftest import BotServer, container_of, run_sql, running_bot, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"


async def start_thread(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, root: str, user: str = "U1") -> str:
    """A thread with one exchange in a container; returns the container id."""
    claude_api.enqueue(Reply([*code_run("touch x"), text(f"ready {root}")]))
    await bot.send_event(mention_event(f"begin {root}", channel=CHANNEL, user=user, ts=root))
    await bot.wait_for(lambda: f"ready {root}" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    return container_of(claude_api.requests[-1]) or list(claude_api.containers)[-1]


async def assert_fresh_next_turn(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, channel: str, thread_ts: str | None, ts: str
) -> None:
    claude_api.enqueue(Reply([text("fresh start answer")]))
    event = message_event("after reset", channel=channel, user="U1", ts=ts, thread_ts=thread_ts,
                          channel_type="im" if channel.startswith("D") else "channel")
    await bot.send_event(event)
    expected = "after reset" if channel.startswith("D") else said_by("U1", "after reset")
    await bot.wait_for(lambda: claude_api.requests[-1]["messages"][-1]["content"][0]["text"] == expected)
    request = claude_api.requests[-1]
    assert container_of(request) is None
    assert [m["role"] for m in request["messages"]] == ["user"]


@pytest.mark.parametrize("words", ["!reset", "<@UBOT> reset", "<@UBOT> Reset!"])
async def test_in_thread_text_reset(
    words: str, bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000201.000100"
    await start_thread(bot, slack, claude_api, root)
    requests_before = len(claude_api.requests)
    await bot.send_event(message_event(words, channel=CHANNEL, user="U2", ts="1700000201.000200", thread_ts=root))
    await bot.wait_for(lambda: "Fresh start" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert len(claude_api.requests) == requests_before  # a reset is not a model turn
    await assert_fresh_next_turn(bot, slack, claude_api, CHANNEL, root, "1700000201.000300")


async def test_message_shortcut_resets_the_thread_of_any_message(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000202.000100"
    await start_thread(bot, slack, claude_api, root)
    bot_reply = slack.thread(CHANNEL, root)[0]
    message = {"type": "message", "ts": bot_reply["ts"], "thread_ts": root, "text": "ready", "user": "UBOT"}
    response_url = slack.new_response_url()
    assert await bot.send_shortcut(message, channel_id=CHANNEL, user_id="U3", response_url=response_url) == 200
    await bot.wait_for(lambda: "reset this conversation" in thread_text(slack, CHANNEL, root))
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    assert "fresh container" in slack.responses[response_url][0]["text"]
    assert "<@U3>" in thread_text(slack, CHANNEL, root)
    await assert_fresh_next_turn(bot, slack, claude_api, CHANNEL, root, "1700000202.000300")


async def test_message_shortcut_outside_a_bot_thread_says_so(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    response_url = slack.new_response_url()
    message = {"type": "message", "ts": "1700000203.000100", "text": "random", "user": "U1"}
    await bot.send_shortcut(message, channel_id=CHANNEL, user_id="U1", response_url=response_url)
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    assert "nothing to reset" in slack.responses[response_url][0]["text"]
    assert slack.messages == []


async def test_slash_reset_in_a_dm_resets_the_dm_conversation(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(Reply([*code_run("touch y"), text("dm ready")]))
    await bot.send_event(message_event("hi", channel="D1", user="U1", ts="1700000204.000100", channel_type="im"))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()
    response_url = slack.new_response_url()
    await bot.send_command("", channel_id="D1", user_id="U1", channel_name="directmessage", response_url=response_url)
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    confirmation = [m for m in slack.messages if m["channel"] == "D1" and "reset this conversation" in slack.rendered_text(m)]
    assert confirmation and not confirmation[0].get("thread_ts")
    await assert_fresh_next_turn(bot, slack, claude_api, "D1", None, "1700000204.000300")


@pytest.mark.parametrize(
    "link",
    [
        "https://acme.slack.com/archives/C1/p1700000205000100",
        "<https://acme.slack.com/archives/C1/p1700000205000300?thread_ts=1700000205.000100&cid=C1>",
    ],
)
async def test_slash_reset_with_a_thread_link(
    link: str, bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000205.000100"
    await start_thread(bot, slack, claude_api, root)
    response_url = slack.new_response_url()
    await bot.send_command(link, channel_id=CHANNEL, user_id="U1", response_url=response_url)
    await bot.wait_for(lambda: "reset this conversation" in thread_text(slack, CHANNEL, root))
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    await assert_fresh_next_turn(bot, slack, claude_api, CHANNEL, root, "1700000205.000400")


async def test_slash_reset_with_something_that_is_not_a_link(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    response_url = slack.new_response_url()
    await bot.send_command("please", channel_id=CHANNEL, user_id="U1", response_url=response_url)
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    assert "link" in slack.responses[response_url][0]["text"]


async def test_bare_slash_reset_lists_the_users_threads_with_a_button_each(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    mine = ["1700000206.000100", "1700000206.000200"]
    for root in mine:
        await start_thread(bot, slack, claude_api, root, user="U1")
    await start_thread(bot, slack, claude_api, "1700000206.000300", user="U2")

    response_url = slack.new_response_url()
    await bot.send_command("", channel_id=CHANNEL, user_id="U1", response_url=response_url)
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    [listing] = slack.responses[response_url]
    buttons = [block["accessory"] for block in listing["blocks"] if "accessory" in block]
    values = [json.loads(button["value"]) for button in buttons]
    assert sorted(value["thread_ts"] for value in values) == mine
    assert listing.get("response_type", "ephemeral") == "ephemeral"

    click_url = slack.new_response_url()
    await bot.send_action(buttons[0]["action_id"], buttons[0]["value"], channel_id=CHANNEL, user_id="U1",
                          response_url=click_url)
    chosen = values[0]["thread_ts"]
    await bot.wait_for(lambda: "reset this conversation" in thread_text(slack, CHANNEL, chosen))
    await bot.wait_for(lambda: bool(slack.responses.get(click_url)))
    assert slack.responses[click_url][0].get("replace_original") is True
    await assert_fresh_next_turn(bot, slack, claude_api, CHANNEL, chosen, "1700000206.000900")


async def test_bare_slash_reset_with_no_threads_explains_the_other_forms(
    bot: BotServer, slack: FakeSlack
) -> None:
    response_url = slack.new_response_url()
    await bot.send_command("", channel_id=CHANNEL, user_id="U1", response_url=response_url)
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    assert "!reset" in slack.responses[response_url][0]["text"]


async def test_the_pickers_excerpts_are_shown_as_written_without_the_bots_mention(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000207.000100"
    claude_api.enqueue(Reply([text("noted")]))
    words = f"<@{slack.bot_user_id}> tell <!channel> about <https://evil.example|our wiki> *now*"
    await bot.send_event(mention_event(words, channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "noted" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    response_url = slack.new_response_url()
    await bot.send_command("", channel_id=CHANNEL, user_id="U1", response_url=response_url)
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    [listing] = slack.responses[response_url]
    [excerpt] = [block["text"]["text"] for block in listing["blocks"] if "accessory" in block]
    assert "<!channel>" not in excerpt and "<https://" not in excerpt and slack.bot_user_id not in excerpt
    assert "channel" in excerpt and "our wiki" in excerpt


async def test_a_reset_done_before_a_crash_is_not_done_or_announced_again(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000208.000100"
    async with running_bot(settings, slack) as bot:
        await start_thread(bot, slack, claude_api, root)
        await bot.send_event(message_event("!reset", channel=CHANNEL, user="U1", ts="1700000208.000200", thread_ts=root))
        await bot.wait_for(lambda: "reset this conversation" in thread_text(slack, CHANNEL, root))
        await bot.idle()
        # As if the process died right after the reset: its item is running again, unfinished.
        await run_sql(settings.database_url, "UPDATE queue SET state = 'running' WHERE message_ts = '1700000208.000200'")
        claude_api.enqueue(Reply([text("after the reset")]))
        await bot.send_event(message_event("next", channel=CHANNEL, user="U1", ts="1700000208.000300", thread_ts=root))
        await bot.wait_for(lambda: "after the reset" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    assert thread_text(slack, CHANNEL, root).count("reset this conversation") == 1
    assert len(claude_api.requests[-1]["messages"]) == 1  # the next message still starts afresh
