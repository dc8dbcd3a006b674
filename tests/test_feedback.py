"""The feedback buttons under every finished answer, and what a press does."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest

from bot.config import Settings
from bot.outbound.blocks import FEEDBACK_ACTION_ID
from tests.conftest import BotServer, running_bot
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import block_action_body, home_opened_event

CHANNEL = "C1"


def feedback_element(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    [element] = [e for b in blocks if b.get("type") == "context_actions" for e in b["elements"]
                 if e.get("type") == "feedback_buttons"]
    return element


async def press(bot: BotServer, reply: dict[str, Any], element: dict[str, Any], rating: str, user: str) -> None:
    """A press of one thumb, as Slack sends it: the action carries the pressed button's value."""
    button = element["positive_button" if rating == "good" else "negative_button"]
    body = block_action_body(
        FEEDBACK_ACTION_ID, button["value"], channel_id=CHANNEL, user_id=user, response_url=bot.slack.new_response_url(),
        message_ts=reply["ts"], message={"ts": reply["ts"], "thread_ts": reply.get("thread_ts"), "blocks": reply["blocks"]},
    )
    payload = json.loads(parse_qs(body)["payload"][0])
    payload["actions"][0]["type"] = "feedback_buttons"
    status, _ = await bot.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
    assert status == 200


async def test_a_finished_answer_carries_feedback_and_a_press_is_kept_counted_and_acknowledged(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    async with running_bot(replace(settings, admin_users=frozenset({"U1"})), slack) as bot:
        await rate_an_answer(bot, slack, claude_api)
    audited = [r.audit for r in caplog.records if r.name == "bot.audit" and r.audit["event"] == "feedback"]  # type: ignore[attr-defined]
    assert [(a["user"], a["rating"]) for a in audited] == [("U1", "good"), ("U2", "bad"), ("U2", "good")]
    assert all(a["thread_ts"] == "1700003001.000100" and a["model"] for a in audited)


async def rate_an_answer(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    root = "1700003001.000100"
    await bot.mention_and_wait(claude_api, Reply([text("Forty-two.")]), "the answer?", root=root, shows="Forty-two.")
    await bot.idle()
    [stop] = slack.calls_to("chat.stopStream")
    element = feedback_element(stop["blocks"])  # the closing blocks of the stream carry the thumbs
    [reply] = slack.thread(CHANNEL, root)

    await press(bot, reply, element, "good", "U1")
    await press(bot, reply, element, "bad", "U2")
    await press(bot, reply, element, "good", "U2")  # a second press changes that person's rating
    await bot.wait_for(lambda: len(slack.ephemerals) == 3)
    assert {e["user"] for e in slack.ephemerals} == {"U1", "U2"}  # acknowledged to the presser only
    assert all(e["thread_ts"] == root for e in slack.ephemerals)
    assert await bot.runtime.store.feedback_totals("T1") == {"good": 2}
    registry = bot.runtime.metrics.registry
    assert registry.get_sample_value("threadbox_feedback_total", {"rating": "good"}) == 2
    assert registry.get_sample_value("threadbox_feedback_total", {"rating": "bad"}) == 1

    # The admins' Home tab sums it up.
    await bot.send_event(home_opened_event("U1"))
    await bot.wait_for(lambda: "U1" in slack.home_views)
    assert "feedback: 2 :thumbsup: 0 :thumbsdown:" in json.dumps(slack.home_views["U1"])


async def test_a_reply_that_is_not_streamed_carries_feedback_too(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, slack_streaming=False), slack) as bot:
        root = "1700003002.000100"
        await bot.mention_and_wait(claude_api, Reply([text("Forty-three.")]), "again?", root=root, shows="Forty-three.")
        await bot.idle()
        [reply] = slack.thread(CHANNEL, root)
        element = feedback_element(reply["blocks"])
        value = json.loads(element["negative_button"]["value"])
        assert value["rating"] == "bad" and value["model"] == settings.anthropic_model and value["item"] == 1
