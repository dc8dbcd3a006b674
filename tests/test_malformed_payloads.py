"""Listeners survive any payload: signed but mutated events, commands, shortcuts and buttons.

Slack counts every 5xx against the app (and retries it); a malformed payload must get a 2xx
(or 4xx for a body that is not a Slack request at all), at most one log line, and no traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.outbound import pacing
from tests.conftest import BotServer, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import (
    block_action_body,
    command_body,
    event_body,
    home_action_body,
    home_opened_event,
    mention_event,
    message_event,
    shortcut_body,
)

# Each example sends a batch, so thousands of requests cost a few hundred examples.
EXAMPLES = 180
BATCH = 12
# Slack gives up after 3 seconds; a request still unanswered after this is a hang.
REQUEST_TIMEOUT = 10

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=24),
    st.sampled_from(["", "C1", "D1", "U1", "T1", "UBOT", "1700000000.000100", "im", "channel", "message",
                     "app_mention", "block_actions", "message_action", "https://", "reset_thread",
                     "app_home_opened", "home", "home_reset_thread"]),
)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=6,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value, the value itself included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    """A copy of `value` with the element at `path` replaced (or removed)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if not rest and delete:
            copy.pop(head, None)
        else:
            copy[head] = replaced(value[head], rest, new, delete)
        return copy
    copy_list = list(value)
    if not rest and delete:
        del copy_list[head]
    else:
        copy_list[head] = replaced(value[head], rest, new, delete)
    return copy_list


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """`base` with one to four elements deleted or replaced by arbitrary JSON."""
    value = base
    for _ in range(draw(st.integers(1, 4))):
        candidates = paths(value)
        path = draw(st.sampled_from(candidates))
        if path and draw(st.booleans()):
            value = replaced(value, path, None, delete=True)
        else:
            value = replaced(value, path, draw(json_values), delete=False)
    return value


def base_events() -> list[dict[str, Any]]:
    root = "1700000000.000100"
    return [
        json.loads(event_body(mention_event("hello", channel="C1", user="U1", ts=root))),
        json.loads(event_body(message_event("more", channel="C1", user="U1", ts="1700000000.000200",
                                            thread_ts=root))),
        json.loads(event_body(message_event("dm", channel="D1", user="U1", ts="1700000000.000300",
                                            channel_type="im"))),
        json.loads(event_body(message_event("!reset", channel="C1", user="U1", ts="1700000000.000400",
                                            thread_ts=root))),
        json.loads(event_body({"type": "assistant_thread_started", "assistant_thread": {
            "user_id": "U1", "context": {"channel_id": "C1"}, "channel_id": "D1",
            "thread_ts": "1700000000.000500"}, "event_ts": "1700000000.000501"})),
        json.loads(event_body({"type": "assistant_thread_context_changed", "assistant_thread": {
            "user_id": "U1", "context": {"channel_id": "C2"}, "channel_id": "D1",
            "thread_ts": "1700000000.000500"}, "event_ts": "1700000000.000502"})),
        json.loads(event_body(message_event("in the assistant", channel="D1", user="U1", ts="1700000000.000600",
                                            thread_ts="1700000000.000500", channel_type="im"))),
        json.loads(event_body(home_opened_event("U1"))),
    ]


def base_interactions(response_url: str) -> list[dict[str, Any]]:
    message = {"type": "message", "user": "U1", "ts": "1700000000.000200", "thread_ts": "1700000000.000100",
               "text": "hi"}
    shortcut = shortcut_body("reset_container", message=message, channel_id="C1", user_id="U1",
                             response_url=response_url)
    button = block_action_body("reset_thread", json.dumps({"channel": "C1", "thread_ts": "1700000000.000100"}),
                               channel_id="C1", user_id="U1", response_url=response_url)
    home_button = home_action_body("home_reset_thread", json.dumps({"channel": "D1", "thread_ts": ""}), user_id="U1")
    return [json.loads(dict(parse_qsl(body))["payload"]) for body in (shortcut, button, home_button)]


def base_commands(response_url: str) -> list[dict[str, str]]:
    texts = ["", "https://fake.slack.com/archives/C1/p1700000000000100", "not a link"]
    return [
        dict(parse_qsl(command_body("/reset", t, channel_id=channel, user_id="U1", response_url=response_url),
                       keep_blank_values=True))
        for t in texts
        for channel in ("C1", "D1")
    ]


@st.composite
def requests(draw: st.DrawFn, response_url: str) -> tuple[str, str]:
    """(body, content type) of one mutated Slack request."""
    kind = draw(st.sampled_from(["event", "interaction", "command", "raw"]))
    if kind == "event":
        return json.dumps(draw(mutated(draw(st.sampled_from(base_events()))))), "application/json"
    if kind == "interaction":
        payload = draw(mutated(draw(st.sampled_from(base_interactions(response_url)))))
        return urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
    if kind == "command":
        form = dict(draw(st.sampled_from(base_commands(response_url))))
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(sorted(form)))
            if draw(st.booleans()):
                del form[key]
            else:
                form[key] = draw(st.text(max_size=40) | st.sampled_from(["/reset", "C1", "D1", "", response_url]))
            if not form:
                break
        return urlencode(form), "application/x-www-form-urlencoded"
    # Bodies that are JSON or a form, but not of the shape Slack sends.
    raw = draw(json_values)
    if draw(st.booleans()):
        return json.dumps(raw), "application/json"
    return urlencode({"payload": json.dumps(raw)}), "application/x-www-form-urlencoded"


async def test_malformed_payloads_get_no_5xx_and_no_traceback(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    # Thousands of requests in seconds: far past any workspace's rate tiers, which are not what
    # this test is about (tests/test_rate_limits.py is). Slack's minute, and the bot's, are shorter still.
    slack.rate_tiers.window = 0.01
    monkeypatch.setattr(pacing, "MINUTE_SECONDS", 0.01)
    response_url = slack.new_response_url()
    statuses: list[int] = []

    loop = asyncio.get_running_loop()

    # Hypothesis drives examples synchronously: it runs in a worker thread while this event
    # loop serves the bot, and hands each request over to the loop.
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch=st.lists(requests(response_url), min_size=BATCH, max_size=BATCH))
    def send_all(batch: list[tuple[str, str]]) -> None:
        for body, content_type in batch:
            status, answer = asyncio.run_coroutine_threadsafe(bot.post(body, content_type), loop).result(REQUEST_TIMEOUT)
            statuses.append(status)
            assert status < 500, (status, answer, body)

    await asyncio.to_thread(send_all)
    await bot.idle()
    assert len(statuses) == EXAMPLES * BATCH >= 2000
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [(r.name, r.getMessage()) for r in tracebacks[:5]]

    # The bot still answers a normal mention.
    claude_api.enqueue(Reply([text("still here")]))
    root = "1700009999.000100"
    assert await bot.send_event(mention_event("are you ok?", channel="C9", user="U1", ts=root)) == 200
    await bot.wait_for(lambda: "still here" in thread_text(slack, "C9", root))


async def test_a_command_without_its_fields_gets_a_polite_note(bot: BotServer, slack: FakeSlack) -> None:
    response_url = slack.new_response_url()
    form = dict(parse_qsl(command_body("/reset", "", channel_id="C1", user_id="U1", response_url=response_url)))
    del form["user_id"]
    status, _ = await bot.post(urlencode(form), "application/x-www-form-urlencoded")
    assert status == 200
    await bot.wait_for(lambda: bool(slack.responses[response_url]))
    assert "couldn't read that request" in slack.responses[response_url][0]["text"]


async def test_a_shortcut_on_a_message_without_ts_is_answered_in_words(bot: BotServer, slack: FakeSlack) -> None:
    response_url = slack.new_response_url()
    body = shortcut_body("reset_container", message={"type": "message", "text": "no ts"}, channel_id="C1",
                         user_id="U1", response_url=response_url)
    status, _ = await bot.post(body, "application/x-www-form-urlencoded")
    assert status == 200
    await bot.wait_for(lambda: bool(slack.responses[response_url]))
    assert "couldn't tell which thread" in slack.responses[response_url][0]["text"]


@pytest.mark.parametrize(
    "body",
    [
        json.loads(event_body(mention_event("hi", channel="C1", user="U1", ts="1700000000.000100"))) | {"event": None},
        json.loads(event_body(mention_event("hi", channel="C1", user="U1", ts="1700000000.000100")))
        | {"event": []},
        json.loads(event_body(mention_event("hi", channel="C1", user="U1", ts="1700000000.000100")))
        | {"event": {"type": "app_mention", "channel": "C1", "ts": {"not": "a string"}, "user": "U1"}},
    ],
    ids=["event-null", "event-a-list", "ts-not-a-string"],
)
async def test_a_malformed_event_is_answered_200_and_logged_in_one_line(
    bot: BotServer, body: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, _ = await bot.post(json.dumps(body), "application/json")
    assert status == 200
    await bot.idle(quiet=0.1)
    lines = [r for r in caplog.records if r.name.startswith(("bot", "slack_bolt")) and r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]
    assert "malformed" in lines[0].getMessage()
