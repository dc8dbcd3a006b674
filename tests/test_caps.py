"""Caps on concurrent turns: per person and overall, across processes, with a word to who waits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bot.config import Settings
from bot.outbound.waiting import QUEUED_REACTION
from storage import TurnLimits
from tests.conftest import running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import mention_event
from tests.processes import bot_process_env, http_bots, wait_for

CHANNEL = "C1"


def slow_reply() -> Reply:
    return Reply([text("working " * 6), text("done")], chunk_delay=0.3)


async def test_a_person_at_the_cap_waits_and_others_do_not(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    settings = replace(settings_on_each_store, turn_limits=TurnLimits(per_person=2))
    roots = [f"1700003001.00{i}100" for i in range(4)]
    async with running_bot(settings, slack) as server:
        for i, root in enumerate(roots):
            claude_api.enqueue(slow_reply())
            await server.send_event(mention_event(f"job {i}", channel=CHANNEL, user="U1" if i < 3 else "U2", ts=root))
        for root in roots:
            await server.wait_for(lambda: "done" in thread_text(slack, CHANNEL, root), timeout=30)
        await server.idle()

    # U1's first two and U2's one ran together; U1's third waited for room.
    assert claude_api.max_in_flight == 3
    assert ("add", roots[2], QUEUED_REACTION) in [(kind, ts, name) for kind, _channel, ts, name in reaction_log(slack)]
    assert ("remove", roots[2], QUEUED_REACTION) in [(kind, ts, name) for kind, _channel, ts, name in reaction_log(slack)]
    [note] = slack.ephemerals
    assert note["user"] == "U1" and "2 answers running" in note["text"]
    assert [r["messages"][-1]["content"][-1]["text"] for r in claude_api.requests][-1].endswith("job 2")


async def test_the_overall_cap_holds_across_processes(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str
) -> None:
    env = bot_process_env(
        tmp_path, slack, claude_api, DATABASE_URL=postgres_url, QUEUE_LEASE_SECONDS="3", MAX_TURNS_OVERALL="2"
    )
    roots = [f"1700003002.00{i}100" for i in range(5)]
    async with http_bots(2, env, tmp_path) as bots:
        for i, root in enumerate(roots):
            claude_api.enqueue(slow_reply())
            await bots[i % 2].send_event(mention_event(f"job {i}", channel=CHANNEL, user=f"U{i + 1}", ts=root))
        for root in roots:
            await wait_for(lambda: "done" in thread_text(slack, CHANNEL, root), timeout=60)
    assert claude_api.max_in_flight == 2
    assert len(claude_api.requests) == 5
    assert any("busy" in e["text"] for e in slack.ephemerals)


def reaction_log(slack: FakeSlack) -> list[tuple[str, str, str, str]]:
    """("add" | "remove", channel, ts, name) of every reaction call, in order."""
    log = []
    for call in slack.calls:
        if call.method in ("reactions.add", "reactions.remove"):
            log.append((call.method.split(".")[1], call.args["channel"], call.args["timestamp"], call.args["name"]))
    return log
