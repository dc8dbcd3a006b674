"""Socket Mode: the same app, with Slack pushing envelopes over a WebSocket."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import parse_qsl

from bot.app import create_runtime
from bot.config import Settings
from bot.http import socket_mode_handler
from tests.conftest import wait_for
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import command_body, event_body, mention_event


async def test_socket_mode_answers_mentions_and_commands(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    socket_settings = replace(settings, slack_app_token=slack.app_token, slack_signing_secret="")
    assert socket_settings.socket_mode
    runtime = await create_runtime(socket_settings)
    handler = socket_mode_handler(runtime)
    await handler.connect_async()
    try:
        await wait_for(lambda: slack.socket_connected)
        claude_api.enqueue(Reply([text("over the socket")]))
        root = "1700000601.000100"
        event = json.loads(event_body(mention_event("hi", channel="C1", user="U1", ts=root)))
        event_envelope = await slack.push_socket("events_api", event)
        await wait_for(lambda: "over the socket" in "".join(slack.thread_texts("C1", root)))
        assert any(ack["envelope_id"] == event_envelope for ack in slack.socket_acks)

        response_url = slack.new_response_url()
        command = dict(parse_qsl(command_body("/reset", "", channel_id="C1", user_id="U1", response_url=response_url)))
        command_envelope = await slack.push_socket("slash_commands", command)
        await wait_for(lambda: bool(slack.responses.get(response_url)))
        assert any(ack["envelope_id"] == command_envelope for ack in slack.socket_acks)
        await runtime.engine.drain()
    finally:
        await handler.close_async()
        await runtime.close()
