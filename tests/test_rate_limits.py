"""Slack's rate limits are per workspace: a busy workspace slows its updates, it collects no 429s.

The fake counts each method's calls in a sliding window as Slack does; the tests' minute is
short (`TEST_MINUTE_SECONDS`, for Slack and the bot alike), so a burst of answers crosses the
tiers in a few seconds.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Settings
from bot.outbound import pacing
from bot.outbound.pacing import PacedWebClient, SlackPacer
from bot.policy.access import AccessControl, AccessPolicy
from storage import TurnLimits
from tests.conftest import TEST_MINUTE_SECONDS, BotServer, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event

MINUTE = TEST_MINUTE_SECONDS


@pytest.fixture
def short_minute(slack: FakeSlack) -> None:
    """Slack's minute, and the bot's idea of it, both `MINUTE` seconds long (as in every test)."""
    assert slack.rate_tiers.window == pacing.MINUTE_SECONDS == MINUTE


async def start_streams(client: AsyncWebClient, count: int) -> list[str]:
    """`count` streams started at once in one workspace; the errors Slack answered."""

    async def start(n: int) -> str:
        try:
            await client.chat_startStream(channel="C1", thread_ts=f"1700004000.{n:06d}", recipient_team_id="T1",
                                          recipient_user_id="U1")
            return ""
        except Exception as error:  # noqa: BLE001 - the test counts what failed
            return str(error)

    return await asyncio.gather(*(start(n) for n in range(count)))


async def test_the_fake_answers_429_past_a_tier_and_the_paced_client_never_hits_it(
    slack: FakeSlack, short_minute: None
) -> None:
    bare = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)  # no retries: the 429 shows
    failed = [error for error in await start_streams(bare, 30) if error]
    assert len(failed) == 10 and all("ratelimited" in error for error in failed)  # Tier 2: 20 a minute
    assert "chat.startStream" in slack.rate_limited

    await asyncio.sleep(MINUTE)
    slack.rate_limited.clear()
    paced = PacedWebClient(pacer=SlackPacer(), token=slack.bot_token, base_url=slack.base_url)
    assert [error for error in await start_streams(paced, 30) if error] == []
    assert slack.rate_limited == []


async def test_the_budget_is_split_between_the_processes_working_the_workspace(
    slack: FakeSlack, short_minute: None
) -> None:
    async def two() -> int:
        return 2

    processes = [PacedWebClient(pacer=SlackPacer(two), token=slack.bot_token, base_url=slack.base_url) for _ in "ab"]
    results = await asyncio.gather(*(start_streams(client, 15) for client in processes))
    assert [error for errors in results for error in errors if error] == []
    assert slack.rate_limited == []


async def test_a_busy_workspace_answers_everyone_without_a_429(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, short_minute: None
) -> None:
    # Thirty answers at once (no cap holds them back): past Tier 2's starts in a minute. The
    # minute's streams go to the first; the others are posted as messages, not held back.
    busy = replace(settings, max_concurrent_turns=30, turn_limits=TurnLimits(per_person=None, overall=None))
    async with running_bot(busy, slack) as bot:
        await answer_thirty(bot, slack, claude_api)


async def answer_thirty(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    roots = [f"1700004100.{n:06d}" for n in range(30)]
    for n, _ in enumerate(roots):
        claude_api.enqueue(Reply([text(f"answer number {n}. " * 30)], chunk_delay=0.05))
    for n, root in enumerate(roots):
        await bot.send_event(mention_event(f"question {n}", channel=f"C{n % 3 + 1}", user="U1", ts=root))
    await bot.wait_for(
        lambda: all("answer number" in thread_text(slack, f"C{n % 3 + 1}", root) for n, root in enumerate(roots)),
        timeout=60,
    )
    await bot.idle()
    assert slack.rate_limited == [] and slack.streaming_messages() == []
    streamed = len(slack.calls_to("chat.startStream"))
    posted = [c for c in slack.calls_to("chat.postMessage") if "answer number" in json.dumps(c)]
    assert 0 < streamed < 30 and streamed + len(posted) == 30  # each answer once, one way or the other
    assert all("answer number" in json.dumps(c) for c in slack.calls_to("chat.postMessage"))  # posted with words
    waited = bot.runtime.metrics.registry.get_sample_value(
        "threadbox_slack_paced_seconds_total", {"method": "chat.startStream"}
    )
    assert not waited  # no answer waited for a stream


async def test_a_turns_output_files_are_shared_in_one_call(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    files = [claude_api.add_file(f"chart{n}.png", b"png" * (n + 1)) for n in range(3)]
    root = "1700004200.000100"
    claude_api.enqueue(Reply([*code_run("python plot.py", file_ids=files), text("Three charts.")]))
    await bot.send_event(mention_event("plot", channel="C1", user="U1", ts=root))
    await bot.wait_for(lambda: len(slack.uploads) == 3)
    await bot.idle()
    [complete] = slack.calls_to("files.completeUploadExternal")
    assert [f["title"] for f in complete["files"]] == ["chart0.png", "chart1.png", "chart2.png"]
    assert complete["thread_ts"] == root


async def test_a_burst_of_new_people_is_looked_up_a_page_at_a_time(slack: FakeSlack) -> None:
    """When this minute's `users.info` calls are used up, the policy reads the directory
    (`users.list`, hundreds of people a call) instead of making each new person wait."""
    slack.directory = [f"U{n}" for n in range(300)]
    slack.users["UGUEST"] = {"is_restricted": True}
    client = PacedWebClient(pacer=SlackPacer(), token=slack.bot_token, base_url=slack.base_url)
    access = AccessControl(client, AccessPolicy(), slack.team_id)
    assert (await access.check("U1", "C1")).allowed  # room: users.info, as always
    while await client.pacer.reserve("users.info"):
        pass  # this minute's users.info calls are taken
    decisions = await asyncio.gather(*(access.check(f"U{n}", "C1") for n in range(2, 300)), access.check("UGUEST", "C1"))
    assert all(d.allowed for d in decisions[:-1]) and decisions[-1].reason == "guest"
    assert len(slack.calls_to("users.info")) == 1 and len(slack.calls_to("users.list")) == 1
