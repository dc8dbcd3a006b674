"""`GET /metrics`: what the bot did, in the Prometheus text format, read as Prometheus reads it."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from tests.conftest import BotServer, running_bot, thread_text
from tests.fakes import ErrorReply, FakeAnthropic, FakeSlack, Reply, code_error, code_run, mention_event, text
from tests.fakes.slack_api import message_event

CHANNEL = "C5"


async def scrape(bot: BotServer) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """The content type and every sample of `GET /metrics`, keyed by (name, sorted labels)."""
    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/metrics") as response:
        assert response.status == 200
        body = await response.text()
        content_type = response.headers["Content-Type"]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }
    return content_type, samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_a_turn_is_counted_timed_and_its_tokens_runs_and_files_recorded(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    report = claude_api.add_file("report.txt", b"12345678")
    shared = slack.add_user_file("data.csv", b"a,b\n1,2\n")
    claude_api.enqueue(
        Reply(
            [text("Working on it. "), *code_run("python make.py", "done", file_ids=[report]),
             *code_error("sleep 999"), text("Here it is.")],
            usage={"input_tokens": 100, "cache_read_input_tokens": 900, "cache_creation_input_tokens": 50,
                   "output_tokens": 40},
        )
    )
    root = "1700000801.000100"
    await bot.send_event(mention_event("make a report", channel=CHANNEL, user="U1", ts=root, files=[shared]))
    await bot.wait_for(lambda: "Here it is." in thread_text(slack, CHANNEL, root))
    await bot.idle()

    content_type, samples = await scrape(bot)
    assert content_type.startswith("text/plain; version=")  # the Prometheus text format
    assert value(samples, "threadbox_turns_total", outcome="answered") == 1
    assert value(samples, "threadbox_turn_duration_seconds_count") == 1
    assert value(samples, "threadbox_time_to_first_word_seconds_count") == 1
    assert value(samples, "threadbox_queue_wait_seconds_count") == 1
    assert value(samples, "threadbox_queue_depth") == 0
    assert {kind: value(samples, "threadbox_tokens_total", kind=kind)
            for kind in ("input", "cache_read", "cache_write", "output")} == {
        "input": 100, "cache_read": 900, "cache_write": 50, "output": 40}
    assert value(samples, "threadbox_code_runs_total", result="ok") == 1
    assert value(samples, "threadbox_code_runs_total", result="error") == 1
    assert value(samples, "threadbox_files_relayed_total", direction="to_container") == 1
    assert value(samples, "threadbox_file_bytes_relayed_total", direction="to_container") == len(b"a,b\n1,2\n")
    assert value(samples, "threadbox_files_relayed_total", direction="to_slack") == 1
    assert value(samples, "threadbox_file_bytes_relayed_total", direction="to_slack") == 8
    # The registry is the runtime's own: tests (and embedders) read it directly too.
    registry = bot.runtime.metrics.registry
    assert registry.get_sample_value("threadbox_turns_total", {"outcome": "answered"}) == 1


async def test_api_errors_by_code_failed_turns_and_replaced_containers(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000802.000100"
    # A 429 from Slack (retried by the SDK) and an overloaded Anthropic API (retried by its SDK).
    slack.fail("assistant.threads.setStatus", "ratelimited", status=429, headers={"Retry-After": "0"})
    claude_api.enqueue(
        ErrorReply(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "1"}),
        Reply([text("first answer")]),
    )
    await bot.send_event(mention_event("hi", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "first answer" in thread_text(slack, CHANNEL, root))
    await bot.idle()

    # The thread's container is gone: the next turn runs in a fresh one.
    for container in list(claude_api.containers):
        claude_api.destroy(container)
    claude_api.enqueue(Reply([text("in a new container")]))
    await bot.send_event(message_event("again", channel=CHANNEL, user="U1", ts="1700000802.000200", thread_ts=root))
    await bot.wait_for(lambda: "in a new container" in thread_text(slack, CHANNEL, root))
    await bot.idle()

    # A request the API refuses ends the turn with an error.
    claude_api.enqueue(ErrorReply(400, "invalid_request_error", "messages: too many"))
    await bot.send_event(message_event("third", channel=CHANNEL, user="U1", ts="1700000802.000300", thread_ts=root))
    await bot.wait_for(lambda: "too many" in thread_text(slack, CHANNEL, root))
    await bot.idle()

    _, samples = await scrape(bot)
    assert value(samples, "threadbox_slack_api_errors_total", method="assistant.threads.setStatus",
                 error="ratelimited") == 1
    assert value(samples, "threadbox_anthropic_api_errors_total", status="529", type="overloaded_error") == 1
    assert value(samples, "threadbox_anthropic_api_errors_total", status="400", type="invalid_request_error") >= 2
    assert value(samples, "threadbox_containers_replaced_total") == 1
    assert value(samples, "threadbox_turns_total", outcome="answered") == 2
    assert value(samples, "threadbox_turns_total", outcome="error") == 1


async def test_the_queue_depth_counts_what_waits_behind_a_running_turn(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    release = asyncio.Event()

    async def held(body: dict[str, object]) -> Reply:
        await release.wait()
        return Reply([text("done")])

    claude_api.responder = held
    root = "1700000803.000100"
    await bot.send_event(mention_event("first", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    for n in (2, 3):
        await bot.send_event(message_event(f"msg {n}", channel=CHANNEL, user="U1", ts=f"1700000803.00{n}00",
                                           thread_ts=root))
    _, samples = await scrape(bot)
    assert value(samples, "threadbox_queue_depth") == 2
    release.set()
    await bot.wait_for(lambda: thread_text(slack, CHANNEL, root).count("done") == 3)
    await bot.idle()
    _, samples = await scrape(bot)
    assert value(samples, "threadbox_queue_depth") == 0
    assert value(samples, "threadbox_queue_wait_seconds_count") == 3


async def test_metrics_can_ask_for_a_token(settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    async with running_bot(replace(settings, metrics_token="s3cret"), slack) as bot, aiohttp.ClientSession() as http:
        async with http.get(f"{bot.url}/metrics") as response:
            assert response.status == 401
        async with http.get(f"{bot.url}/metrics", headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with http.get(f"{bot.url}/metrics", headers={"Authorization": "Bearer s3cret"}) as response:
            assert response.status == 200 and "threadbox_turns" in await response.text()
        async with http.get(f"{bot.url}/healthz") as response:
            assert response.status == 200
