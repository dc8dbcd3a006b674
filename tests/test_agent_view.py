"""Slack's Agent messaging experience: the manifest a new app can use, the Messages tab's prompts,
what a person looks at beside the app, and installs made before it."""

from __future__ import annotations

import json

import pytest
import yaml
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.conftest import BotServer, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import CONFIG_TOKEN, event_body, home_opened_event, message_event
from tests.processes import ROOT

MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())


async def test_slack_creates_a_new_app_from_the_manifest(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=CONFIG_TOKEN, base_url=slack.base_url)
    created = await client.apps_manifest_create(manifest=MANIFEST)
    assert created["ok"] and created["app_id"]
    assert MANIFEST["features"]["agent_view"]["agent_description"]
    assert "assistant_view" not in MANIFEST["features"]
    events = MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    assert {"app_home_opened", "app_context_changed", "message.im", "message_stream_stopped"} <= set(events)

    # The manifest of before: Slack no longer creates an app with the assistant view.
    old = json.loads(json.dumps(MANIFEST))
    old["features"]["assistant_view"] = {"assistant_description": "x"}
    del old["features"]["agent_view"]
    old["settings"]["event_subscriptions"]["bot_events"] += ["assistant_thread_started"]
    with pytest.raises(SlackApiError) as refused:
        await client.apps_manifest_create(manifest=old)
    pointers = {problem["pointer"] for problem in refused.value.response["errors"]}
    assert "/features/assistant_view" in pointers


async def test_opening_the_messages_tab_offers_prompts_slack_shows(bot: BotServer, slack: FakeSlack) -> None:
    assert await bot.send_event(home_opened_event("U1", tab="messages", channel="D1")) == 200
    await bot.wait_for(lambda: "D1" in slack.suggested_prompts)
    prompts = slack.suggested_prompts["D1"]
    assert 2 <= len(prompts) <= 4 and all(p["title"] and p["message"] for p in prompts)
    [call] = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert "thread_ts" not in call  # with one, Slack drops the prompts without a word
    assert "U1" not in slack.home_views  # the Messages tab is not the Home tab


async def test_an_install_from_before_agent_view_still_greets_its_assistant_threads(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.surface = "assistant_view"
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1", "context": {}, "channel_id": "D5", "thread_ts": "1700000406.000100"},
        "event_ts": "1700000406.000050",
    }
    assert await bot.send_event(started) == 200
    await bot.wait_for(lambda: "D5/1700000406.000100" in slack.suggested_prompts)
    assert "sandbox" in thread_text(slack, "D5", "1700000406.000100")


def context_changed(entities: list[dict[str, object]], *, user: str = "U1") -> str:
    """`app_context_changed` as Slack documents it: the person only in the authorizations."""
    body = json.loads(event_body({"type": "app_context_changed", "context": {"entities": entities}}))
    body["authorizations"] = [{"team_id": "T1", "user_id": user, "is_bot": False, "is_enterprise_install": False}]
    return json.dumps(body)


async def ask_in_dm(bot: BotServer, claude_api: FakeAnthropic, words: str, *, user: str, ts: str) -> str:
    """A DM from `user` to the app, answered; what Claude was asked."""
    asked = len(claude_api.requests)
    claude_api.enqueue(Reply([text("Answered.")]))
    await bot.send_event(message_event(words, channel=f"D{user[1:]}", user=user, ts=ts, channel_type="im"))
    await bot.wait_for(lambda: len(claude_api.requests) > asked)
    await bot.idle()
    return str(claude_api.requests[-1]["messages"][-1]["content"])


async def views(bot: BotServer, entity: dict[str, object], *, user: str = "U1") -> None:
    status, _ = await bot.post(context_changed([entity], user=user), "application/json")
    assert status == 200


async def test_a_dm_about_this_channel_reads_the_channel_the_person_views(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.add_message("C4", "The deploy failed with error 137 on node-7", user="U2", ts="1700000500.000100")
    slack.add_message("C4", "memory limit is 512Mi", user="U3", ts="1700000500.000200")
    await views(bot, {"type": "slack#/types/channel_id", "value": "C4", "team_id": "T1"})
    asked = await ask_in_dm(bot, claude_api, "what went wrong in this channel?", user="U1", ts="1700000600.000100")
    assert "error 137 on node-7" in asked and "memory limit is 512Mi" in asked
    assert asked.index("error 137") < asked.index("512Mi")  # oldest first

    # Someone who is not in the channel they name gets nothing of it.
    slack.members["C4"] = ["UBOT", "U2", "U3"]
    await views(bot, {"type": "slack#/types/channel_id", "value": "C4"}, user="U9")
    asked = await ask_in_dm(bot, claude_api, "summarize this channel", user="U9", ts="1700000600.000200")
    assert "error 137" not in asked


async def test_a_dm_about_this_thread_reads_the_thread_the_person_views(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000700.000100"
    slack.add_message("C5", "Should we ship on Friday?", user="U2", ts=root)
    slack.add_message("C5", "Only after the load test passes", user="U3", ts="1700000700.000200", thread_ts=root)
    await views(bot, {"type": "slack#/types/message_context", "value": {"channel_id": "C5", "thread_ts": root}})
    asked = await ask_in_dm(bot, claude_api, "what did they decide in this thread?", user="U1", ts="1700000800.000100")
    assert "Should we ship on Friday?" in asked and "Only after the load test passes" in asked

    # A DM that is not about what they view reads nothing of it.
    asked = await ask_in_dm(bot, claude_api, "what is 2+2?", user="U1", ts="1700000800.000200")
    assert "Friday" not in asked
