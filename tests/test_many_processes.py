"""Several real `python -m bot` processes on one PostgreSQL database, events spread over them."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg

from tests.conftest import container_of, long_running_reply, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event
from tests.processes import HttpBot, bot_process_env, http_bots, wait_for

CHANNEL = "C1"


def cluster_env(tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str) -> dict[str, str]:
    return bot_process_env(tmp_path, slack, claude_api, DATABASE_URL=postgres_url, QUEUE_LEASE_SECONDS="3")


async def lease_holder(bots: list[HttpBot], postgres_url: str, thread_ts: str) -> HttpBot:
    """The process whose lease holds the thread (a lease's owner names its pid)."""
    connection = await asyncpg.connect(postgres_url)
    try:
        owner = await connection.fetchval("SELECT owner FROM claims WHERE thread_ts = $1", thread_ts)
    finally:
        await connection.close()
    [holder] = [bot for bot in bots if bot.process.pid == int(owner.split(":")[1])]
    return holder


async def test_processes_started_together_answer_twins_and_retries_once(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str
) -> None:
    async with http_bots(3, cluster_env(tmp_path, slack, claude_api, postgres_url), tmp_path) as bots:
        roots = [f"1700001001.00{i}100" for i in range(3)]
        for i, root in enumerate(roots):
            mention = mention_event(f"question {i}", channel=CHANNEL, user="U1", ts=root)
            twin = message_event(mention["text"], channel=CHANNEL, user="U1", ts=root)
            statuses = await asyncio.gather(
                bots[i % 3].send_event(mention, event_id=f"EvM{i}"),
                bots[(i + 1) % 3].send_event(twin, event_id=f"EvT{i}"),
                bots[(i + 2) % 3].send_event(mention, event_id=f"EvM{i}", retry_num=1),
            )
            assert statuses == [200, 200, 200]
        await wait_for(lambda: all("ok" in thread_text(slack, CHANNEL, r) for r in roots), timeout=30)
        await asyncio.sleep(1.0)  # time for any duplicate to show
    assert len(claude_api.requests) == 3
    assert all(len(slack.thread(CHANNEL, root)) == 1 for root in roots)


async def test_quick_follow_ups_to_different_processes_run_in_order_in_one_container(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str
) -> None:
    root = "1700001002.000100"
    async with http_bots(2, cluster_env(tmp_path, slack, claude_api, postgres_url), tmp_path) as (one, two):
        claude_api.enqueue(Reply([*code_run("echo start > log"), text("started")]))
        await one.send_event(mention_event("start", channel=CHANNEL, user="U1", ts=root))
        await wait_for(lambda: "started" in thread_text(slack, CHANNEL, root), timeout=30)
        claude_api.enqueue(
            Reply([*code_run("echo A >> log"), text("answer A")], delay=0.8),
            Reply([*code_run("echo B >> log"), text("answer B")]),
        )
        await one.send_event(message_event("question A", channel=CHANNEL, user="U1", ts="1700001002.000200", thread_ts=root))
        await two.send_event(message_event("question B", channel=CHANNEL, user="U2", ts="1700001002.000300", thread_ts=root))
        await wait_for(lambda: "answer B" in thread_text(slack, CHANNEL, root), timeout=30)
    _, a, b = claude_api.requests
    assert [r["messages"][-1]["content"][0]["text"] for r in (a, b)] == [
        said_by("U1", "question A"), said_by("U2", "question B")
    ]
    assert b["messages"][-2]["content"][-1]["text"] == "answer A"  # B saw A's answer
    [container] = claude_api.containers
    assert container_of(a) == container_of(b) == container
    assert max(claude_api.max_concurrent_per_container.values()) == 1
    texts = slack.thread_texts(CHANNEL, root)
    assert [i for i, t in enumerate(texts) if "answer A" in t][0] < [i for i, t in enumerate(texts) if "answer B" in t][0]


async def test_a_reset_sent_to_another_process_lands_between_two_messages(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str
) -> None:
    root = "1700001003.000100"
    async with http_bots(3, cluster_env(tmp_path, slack, claude_api, postgres_url), tmp_path) as bots:
        claude_api.enqueue(Reply([*code_run("make state"), text("state made")], delay=0.8))
        await bots[0].send_event(mention_event("make state", channel=CHANNEL, user="U1", ts=root))
        await wait_for(lambda: len(claude_api.requests) == 1, timeout=30)
        response_url = slack.new_response_url()
        assert await bots[1].send_shortcut(
            {"ts": root, "text": "make state", "user": "U1"}, channel_id=CHANNEL, user_id="U1", response_url=response_url
        ) == 200
        claude_api.enqueue(Reply([text("fresh answer")]))
        await bots[2].send_event(message_event("after reset", channel=CHANNEL, user="U1", ts="1700001003.000300", thread_ts=root))
        await wait_for(lambda: "fresh answer" in thread_text(slack, CHANNEL, root), timeout=30)
        await wait_for(lambda: any("Done" in r["text"] for r in slack.responses.get(response_url, [])), timeout=30)
    before, after = claude_api.requests
    assert len(after["messages"]) == 1 and container_of(after) is None  # a fresh container
    assert container_of(before) is None and len(claude_api.containers) == 2
    texts = slack.thread_texts(CHANNEL, root)
    order = [next(i for i, t in enumerate(texts) if needle in t) for needle in ("state made", "Fresh start", "fresh answer")]
    assert order == sorted(order)


async def test_kill_9_of_the_process_running_a_turn_is_taken_over_and_answered_once(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str
) -> None:
    root = "1700001004.000100"
    async with http_bots(2, cluster_env(tmp_path, slack, claude_api, postgres_url), tmp_path) as bots:
        claude_api.enqueue(long_running_reply("doomed words"))
        await bots[0].send_event(mention_event("survive this", channel=CHANNEL, user="U1", ts=root))
        await wait_for(lambda: "doomed words" in thread_text(slack, CHANNEL, root), timeout=30)
        victim = await lease_holder(bots, postgres_url, root)
        pid = victim.process.pid
        claude_api.enqueue(Reply([text("answer after takeover")]))
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: "answer after takeover" in thread_text(slack, CHANNEL, root), timeout=30)
        await asyncio.sleep(0.5)
        assert victim.process.returncode == -signal.SIGKILL or await victim.process.wait() == -signal.SIGKILL
    messages = slack.thread(CHANNEL, root)
    assert [m for m in messages if m.get("streaming")] == []
    texts = slack.thread_texts(CHANNEL, root)
    assert len(texts) == 2 and "interrupted" in texts[0] and texts[1].count("answer after takeover") == 1


async def test_a_stopping_process_hands_its_turn_to_another_at_once(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str
) -> None:
    root = "1700001005.000100"
    # Leases far longer than the test: only a hand-back can move the turn in time.
    env = bot_process_env(
        tmp_path, slack, claude_api, DATABASE_URL=postgres_url, QUEUE_LEASE_SECONDS="300", SHUTDOWN_GRACE_SECONDS="0.5"
    )
    async with http_bots(2, env, tmp_path) as bots:
        claude_api.enqueue(long_running_reply("slow words"))
        await bots[0].send_event(mention_event("hand me over", channel=CHANNEL, user="U1", ts=root))
        await wait_for(lambda: "slow words" in thread_text(slack, CHANNEL, root), timeout=30)
        stopping = await lease_holder(bots, postgres_url, root)
        claude_api.enqueue(Reply([text("answered by the other process")]))
        stopping.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(stopping.process.wait(), 30) == 0
        await wait_for(lambda: "answered by the other process" in thread_text(slack, CHANNEL, root), timeout=20)
    assert [m for m in slack.thread(CHANNEL, root) if m.get("streaming")] == []
    assert "interrupted" in slack.thread_texts(CHANNEL, root)[0]


async def test_stop_sent_to_another_process_stops_the_turn_where_it_runs(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, postgres_url: str
) -> None:
    """The process running the turn hears of the stop through the database's notification,
    long before its next lease renewal (every 10 s with these leases)."""
    env = {**cluster_env(tmp_path, slack, claude_api, postgres_url), "QUEUE_LEASE_SECONDS": "30"}
    async with http_bots(2, env, tmp_path) as bots:
        root = "1700001006.000100"
        claude_api.enqueue(long_running_reply("partial words"))
        await bots[0].send_event(mention_event("a long job", channel=CHANNEL, user="U1", ts=root))
        await wait_for(lambda: "partial words" in thread_text(slack, CHANNEL, root))
        holder = await lease_holder(bots, postgres_url, root)
        [other] = [bot for bot in bots if bot is not holder]
        await other.send_event(message_event("!stop", channel=CHANNEL, user="U2", ts="1700001006.000200", thread_ts=root))
        await wait_for(lambda: "Stopped by u2" in thread_text(slack, CHANNEL, root), timeout=5)
    assert "the end of it" not in thread_text(slack, CHANNEL, root)
    assert len(claude_api.requests) == 1
