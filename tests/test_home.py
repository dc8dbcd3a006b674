"""The app's Home tab: each person's threads with a Reset button each, admins' totals, and
what nobody else may see, through `views.publish` on the fake Slack."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from bot.config import Settings
from bot.outbound.blocks import HOME_RESET_ACTION_ID
from bot.turn.resets import reset_outcome
from storage import ThreadKey
from tests.conftest import BotServer, run_sql, running_bot, thread_text, with_settings
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import home_action_body, home_opened_event, mention_event, message_event
from tests.test_reset import assert_fresh_next_turn

DAY = 86400


def spend(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0}


async def talk(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, words: str, *, user: str, channel: str, ts: str,
    usage: dict[str, int] | None = None, answer: str = "done",
) -> None:
    """Start a thread with one answered turn (in a DM: a top-level message)."""
    claude_api.enqueue(Reply([text(answer)], usage=usage or spend(600, 400)))
    if channel.startswith("D"):
        await bot.send_event(message_event(words, channel=channel, user=user, ts=ts, channel_type="im"))
        await bot.wait_for(lambda: any(answer in slack.rendered_text(m) for m in slack.messages if m["channel"] == channel))
    else:
        await bot.send_event(mention_event(words, channel=channel, user=user, ts=ts))
        await bot.wait_for(lambda: answer in thread_text(slack, channel, ts))
    await bot.idle()


async def open_home(bot: BotServer, user: str) -> dict[str, Any]:
    """Open the Home tab as `user`; the view Slack was given for them."""
    published = len([c for c in bot.slack.calls_to("views.publish") if c.get("user_id") == user])
    assert await bot.send_event(home_opened_event(user)) == 200
    await bot.wait_for(lambda: len([c for c in bot.slack.calls_to("views.publish") if c.get("user_id") == user]) > published)
    return bot.slack.home_views[user]


async def press_home_button(bot: BotServer, user: str, button: dict[str, Any]) -> dict[str, Any]:
    """Press a button of `user`'s Home tab; the view republished for them."""
    published = len([c for c in bot.slack.calls_to("views.publish") if c.get("user_id") == user])
    status, _ = await bot.post(home_action_body(button["action_id"], button["value"], user_id=user),
                               "application/x-www-form-urlencoded")
    assert status == 200
    await bot.wait_for(lambda: len([c for c in bot.slack.calls_to("views.publish") if c.get("user_id") == user]) > published)
    return bot.slack.home_views[user]


def texts(view: dict[str, Any]) -> list[str]:
    """Every text of the view, one per block (a context's elements joined by a space)."""
    found = []
    for block in view["blocks"]:
        if isinstance(block.get("text"), dict):
            found.append(block["text"]["text"])
        elif block.get("elements"):
            found.append(" ".join(element.get("text", "") for element in block["elements"]))
    return found


def thread_rows(view: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(text, Reset button) of each thread listed."""
    return [
        (block["text"]["text"], block["accessory"])
        for block in view["blocks"]
        if block.get("accessory", {}).get("action_id") == HOME_RESET_ACTION_ID
    ]


def admin_sections(view: dict[str, Any]) -> list[str]:
    """The texts after the workspace header: today's total, per person, per channel, then the week's."""
    headers = [i for i, b in enumerate(view["blocks"]) if b["type"] == "header" and "workspace" in b["text"]["text"]]
    if not headers:
        return []
    return [b["text"]["text"] for b in view["blocks"][headers[0] + 1 :] if b["type"] == "section"]


async def test_a_person_sees_their_threads_and_nobody_elses(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.members["C3"] = ["UBOT", "U2"]  # U1 has left C3 since talking there
    started = time.time()
    async with running_bot(settings_on_each_store, slack) as bot:
        await talk(bot, slack, claude_api, "plot the sales by region", user="U1", channel="C1", ts="1700002001.000100",
                   usage=spend(600, 400))
        await talk(bot, slack, claude_api, "clean up the CSV", user="U1", channel="C2", ts="1700002002.000100",
                   usage=spend(1500, 500))
        await talk(bot, slack, claude_api, "secret plans", user="U1", channel="C3", ts="1700002003.000100")
        await talk(bot, slack, claude_api, "U2's own question", user="U2", channel="C1", ts="1700002004.000100")

        mine = await open_home(bot, "U1")
        rows = thread_rows(mine)
        assert len(rows) == 2  # not the thread of C3, nor U2's
        (newest, newest_button), (oldest, oldest_button) = rows
        assert "<#C2>" in newest and "“clean up the CSV”" in newest and "2,000 tokens" in newest
        assert "<#C1>" in oldest and "“plot the sales by region”" in oldest and "1,000 tokens" in oldest
        for row in (newest, oldest):
            [when] = [int(part.split("^")[0]) for part in row.split("<!date^")[1:]]
            assert started - 1 <= when <= time.time() + 1
        assert json.loads(newest_button["value"]) == {"channel": "C2", "thread_ts": "1700002002.000100"}
        assert json.loads(oldest_button["value"]) == {"channel": "C1", "thread_ts": "1700002001.000100"}
        assert "https://fake-workspace.slack.com/archives/C2/p1700002002000100" in newest
        whole = json.dumps(mine)
        assert "secret plans" not in whole and "U2's own question" not in whole
        assert "*Your usage* today: 4,000 tokens" in " ".join(texts(mine))
        assert admin_sections(mine) == []  # not an admin

        theirs = await open_home(bot, "U2")
        [(row, _)] = thread_rows(theirs)
        assert "U2's own question" in row
        assert "plot the sales" not in json.dumps(theirs)


async def test_someone_with_no_threads_is_told_how_to_start(bot: BotServer, slack: FakeSlack) -> None:
    view = await open_home(bot, "U3")
    assert view["type"] == "home" and thread_rows(view) == []
    words = " ".join(texts(view))
    assert "no threadbox threads yet" in words and "<@UBOT>" in words and "direct message" in words
    assert admin_sections(view) == []


async def test_admins_see_todays_and_this_weeks_totals_per_person_and_channel(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    settings = with_settings(settings_on_each_store, admin_users=frozenset({"U9"}))
    two_days_ago, ten_days_ago = "1700002101.000100", "1700002105.000100"
    async with running_bot(settings, slack) as bot:
        await talk(bot, slack, claude_api, "a", user="U1", channel="C1", ts=two_days_ago, usage=spend(600, 400))
        await talk(bot, slack, claude_api, "b", user="U2", channel="C1", ts="1700002102.000100", usage=spend(1500, 500))
        await talk(bot, slack, claude_api, "c", user="U1", channel="C2", ts="1700002103.000100", usage=spend(200, 100))
        await talk(bot, slack, claude_api, "d", user="U2", channel="D2", ts="1700002104.000100", usage=spend(30, 20))
        await talk(bot, slack, claude_api, "e", user="U3", channel="C1", ts=ten_days_ago, usage=spend(4000, 3000))
        await shift_usage(settings.database_url, two_days_ago, 2 * DAY)
        await shift_usage(settings.database_url, ten_days_ago, 10 * DAY)

        view = await open_home(bot, "U9")
        today_total, today_people, today_channels, week_total, week_people, week_channels = admin_sections(view)
        assert today_total.startswith("*Today:* 2,350 tokens") and "3 answers" in today_total
        assert lines(today_people) == ["<@U2>: 2,050 tokens", "<@U1>: 300 tokens"]
        assert lines(today_channels) == ["<#C1>: 2,000 tokens", "<#C2>: 300 tokens", "Direct messages: 50 tokens"]
        assert week_total.startswith("*This week:* 3,350 tokens") and "4 answers" in week_total
        assert lines(week_people) == ["<@U2>: 2,050 tokens", "<@U1>: 1,300 tokens"]
        assert lines(week_channels) == ["<#C1>: 3,000 tokens", "<#C2>: 300 tokens", "Direct messages: 50 tokens"]
        assert "U3" not in today_people + week_people  # ten days ago: in neither
        assert "(~$0.0083)" in today_people  # U2 today: 1,530 in at $2, 520 out at $10 per million (Sonnet 5.5)
        assert "UTC" in " ".join(texts(view))
        assert thread_rows(view) == [] and "no threadbox threads yet" in json.dumps(view)

        # Someone who is not an admin sees only their own threads.
        assert admin_sections(await open_home(bot, "U1")) == []


def lines(section: str) -> list[str]:
    """A table's lines, each cut after its token count."""
    return [line.removeprefix("• ").split(" tokens")[0] + " tokens" for line in section.splitlines()[1:]]


async def shift_usage(database_url: str, thread_ts: str, seconds: int) -> None:
    """Date a thread's usage back, as if its turns were answered `seconds` ago."""
    if database_url.startswith("sqlite:"):
        sql = f"UPDATE usage SET recorded_at = recorded_at - {seconds} WHERE thread_ts = '{thread_ts}';"
    else:
        sql = f"UPDATE usage SET recorded_at = recorded_at - interval '{seconds} seconds' WHERE thread_ts = '{thread_ts}';"
    await run_sql(database_url, sql)


async def test_the_reset_button_on_the_home_tab_resets_the_thread_and_republishes(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700002201.000100"
    async with running_bot(settings_on_each_store, slack) as bot:
        claude_api.enqueue(Reply([*code_run("touch x"), text("ready")]))
        await bot.send_event(mention_event("make a file", channel="C1", user="U1", ts=root))
        await bot.wait_for(lambda: "ready" in thread_text(slack, "C1", root))
        await bot.idle()
        [(_, button)] = thread_rows(await open_home(bot, "U1"))

        view = await press_home_button(bot, "U1", button)
        await bot.wait_for(lambda: "Fresh start" in thread_text(slack, "C1", root))
        notice = texts(view)[2]
        assert "<#C1>" in notice and "“make a file”" in notice and "fresh container" in notice
        assert len(thread_rows(view)) == 1  # the thread stays listed, with what it used
        await assert_fresh_next_turn(bot, slack, claude_api, "C1", root, "1700002201.000300")
        await bot.idle()


async def test_a_dm_conversation_is_reset_from_the_home_tab(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    await talk(bot, slack, claude_api, "hello in a DM", user="U1", channel="D1", ts="1700002301.000100")
    [(row, button)] = thread_rows(await open_home(bot, "U1"))
    assert "Direct message" in row and json.loads(button["value"]) == {"channel": "D1", "thread_ts": ""}
    await press_home_button(bot, "U1", button)
    await bot.wait_for(lambda: any("Fresh start" in slack.rendered_text(m) for m in slack.messages
                                   if m["channel"] == "D1" and not m.get("thread_ts")))
    await assert_fresh_next_turn(bot, slack, claude_api, "D1", None, "1700002301.000300")


async def test_a_reset_button_pressed_by_someone_outside_the_channel_is_refused_and_resets_nothing(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700002401.000100"
    slack.members["C1"] = ["UBOT", "U1"]
    await talk(bot, slack, claude_api, "private work", user="U1", channel="C1", ts=root)
    [(_, button)] = thread_rows(await open_home(bot, "U1"))

    refused = await press_home_button(bot, "U9", button)
    missing = {**button, "value": json.dumps({"channel": "C1", "thread_ts": "1700002401.000999"})}
    nothing_there = await press_home_button(bot, "U9", missing)
    await bot.idle()
    expected = reset_outcome(ThreadKey("T1", "C1", root), existed=False)
    assert texts(refused)[2] == texts(nothing_there)[2] == expected  # learns nothing
    assert "private work" not in json.dumps(refused) and thread_rows(refused) == []
    assert "Fresh start" not in thread_text(slack, "C1", root)
    await bot.send_event(message_event("still there?", channel="C1", user="U1", ts="1700002401.000300", thread_ts=root))
    await bot.wait_for(lambda: len(claude_api.requests) == 2)
    assert len(claude_api.requests[-1]["messages"]) == 3  # the history survived


async def test_people_the_policy_refuses_see_no_data_and_disallowed_channels_are_hidden(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.users["U5"] = {"is_restricted": True}
    async with running_bot(with_settings(settings, allowed_channels=frozenset({"C2"})), slack) as bot:
        await bot.send_event(mention_event("in a channel not allowed", channel="C1", user="U1", ts="1700002501.000100"))
        await bot.send_event(mention_event("a guest asks", channel="C2", user="U5", ts="1700002502.000100"))
        await bot.wait_for(lambda: len(slack.ephemerals) == 2)
        await talk(bot, slack, claude_api, "allowed here", user="U1", channel="C2", ts="1700002503.000100")

        guest = await open_home(bot, "U5")
        assert thread_rows(guest) == [] and "guest" in " ".join(texts(guest))
        assert "a guest asks" not in json.dumps(guest) and "<#C2>" not in json.dumps(guest)

        [(row, _)] = thread_rows(await open_home(bot, "U1"))
        assert "allowed here" in row

        # A Reset button the guest still had does nothing either.
        button = {"action_id": HOME_RESET_ACTION_ID, "value": json.dumps({"channel": "C2", "thread_ts": "1700002503.000100"})}
        pressed = await press_home_button(bot, "U5", button)
        await bot.idle()
        assert "guest" in " ".join(texts(pressed)) and "Fresh start" not in thread_text(slack, "C2", "1700002503.000100")


async def test_a_title_with_mentions_pings_nobody(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    await talk(bot, slack, claude_api, "<!channel> see <@U2> &lt;b&gt; and <https://example.com|the site>", user="U1",
               channel="C1", ts="1700002601.000100")
    view = await open_home(bot, "U1")
    [(row, _)] = thread_rows(view)
    assert "“@channel see @U2 &lt;b&gt; and the site”" in row
    whole = json.dumps(view)
    assert "<!channel>" not in whole and "<@U2>" not in whole and "<https://example.com" not in whole


async def test_many_threads_are_bounded_most_recent_first(settings: Settings, slack: FakeSlack) -> None:
    now = time.time()
    rows = [(f"17000027{n:02d}.000100", now - n * 60) for n in range(25)]
    async with running_bot(settings, slack) as bot:
        await run_sql(settings.database_url, "".join(
            f"INSERT INTO conversations (team_id, channel_id, thread_ts, created_at, updated_at)"
            f" VALUES ('T1', 'C1', '{ts}', {at}, {at});"
            f"INSERT INTO participants VALUES ('T1', 'C1', '{ts}', 'U1', 'question {ts}', {at});"
            for ts, at in rows
        ))
        view = await open_home(bot, "U1")
    shown = thread_rows(view)
    assert len(shown) == 20 and len(view["blocks"]) <= 100
    assert [json.loads(button["value"])["thread_ts"] for _, button in shown] == [ts for ts, _ in rows[:20]]
    assert "…and 5 older threads" in " ".join(texts(view))


async def test_the_messages_tab_and_malformed_events_publish_nothing(
    bot: BotServer, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    assert await bot.send_event(home_opened_event("U1", tab="messages")) == 200
    assert await bot.send_event({**home_opened_event("U1"), "user": {"id": "U1"}}) == 200
    assert await bot.send_event({k: v for k, v in home_opened_event("U1").items() if k != "tab"}) == 200
    status, _ = await bot.post(home_action_body(HOME_RESET_ACTION_ID, "not json", user_id="U1"),
                               "application/x-www-form-urlencoded")
    assert status == 200
    await bot.idle()
    assert [c["user_id"] for c in slack.calls_to("views.publish")] == ["U1"]  # the button's answer only
    assert "out of date" in " ".join(texts(slack.home_views["U1"]))
    assert not [r for r in caplog.records if r.exc_info]


async def test_slack_hears_back_before_the_tab_is_built(bot: BotServer, slack: FakeSlack) -> None:
    """Slack wants an answer within 3 seconds; building the tab may look at many channels."""
    slack.delay("conversations.members", 1.0)
    slack.delay("views.publish", 1.0)
    assert await bot.send_event(home_opened_event("U1")) == 200
    assert "U1" not in slack.home_views, "the tab was built before Slack was answered"
    await bot.wait_for(lambda: "U1" in slack.home_views)
