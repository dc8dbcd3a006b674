"""Who may use the bot and reset what; files deleted on reset and after the retention period;
the token only for Slack's hosts; the audit trail as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.config import Settings
from bot.policy.budgets import Budget
from bot.turn.resets import reset_outcome
from storage import ThreadKey
from tests.conftest import BotServer, container_of, run_sql, running_bot, said_by, thread_text, with_settings
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event
from tests.processes import bot_process_env, http_bots, wait_for

CHANNEL = "C1"


async def start_thread(bot: BotServer, slack: FakeSlack, root: str, user: str = "U1", channel: str = CHANNEL) -> None:
    await bot.send_event(mention_event("set up", channel=channel, user=user, ts=root))
    await bot.wait_for(lambda: "ok" in thread_text(slack, channel, root))
    await bot.idle()


async def test_someone_outside_the_channel_cannot_reset_and_learns_nothing(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700001101.000100"
    slack.members[CHANNEL] = ["UBOT", "U1"]
    await start_thread(bot, slack, root)
    link = f"https://fake.slack.com/archives/{CHANNEL}/p{root.replace('.', '')}"
    missing = f"https://fake.slack.com/archives/{CHANNEL}/p1700001101000999"
    answers = []
    for target in (link, missing):
        response_url = slack.new_response_url()
        await bot.send_command(target, channel_id="C9", user_id="U9", response_url=response_url)
        await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
        answers.append(slack.responses[response_url][0]["text"])
    response_url = slack.new_response_url()
    await bot.send_shortcut({"ts": root, "text": "set up", "user": "U1"}, channel_id=CHANNEL, user_id="U9", response_url=response_url)
    await bot.wait_for(lambda: bool(slack.responses.get(response_url)))
    answers.append(slack.responses[response_url][0]["text"])
    await bot.idle()

    assert answers[0] == answers[1] == answers[2] == reset_outcome(ThreadKey("T1", CHANNEL, root), existed=False)
    assert "reset this conversation" not in thread_text(slack, CHANNEL, root)
    await bot.send_event(message_event("still there?", channel=CHANNEL, user="U1", ts="1700001101.000300", thread_ts=root))
    await bot.wait_for(lambda: len(claude_api.requests) == 2)
    assert len(claude_api.requests[-1]["messages"]) == 3  # the history survived


async def test_guests_and_external_people_are_refused_and_nothing_reaches_the_model(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.users["U5"] = {"is_restricted": True}
    slack.users["U6"] = {"is_ultra_restricted": True, "is_restricted": True}
    slack.users["U7"] = {"team_id": "T9"}
    shared = slack.add_user_file("secret.csv", b"a,b\n1,2\n")
    for user, root in (("U5", "1700001102.000100"), ("U6", "1700001102.000200"), ("U7", "1700001102.000300")):
        await bot.send_event(mention_event("run this", channel=CHANNEL, user=user, ts=root, files=[shared]))
    await bot.wait_for(lambda: len(slack.ephemerals) == 3)
    await bot.idle()
    assert claude_api.requests == [] and claude_api.uploaded == [] and slack.downloads == []
    notes = {e["user"]: e["text"] for e in slack.ephemerals}
    assert "guest" in notes["U5"] and "guest" in notes["U6"] and "members of this workspace" in notes["U7"]
    assert all(e["thread_ts"] for e in slack.ephemerals)

    # A second message from the same person in the same thread is refused without another note.
    await bot.send_event(message_event("again", channel=CHANNEL, user="U5", ts="1700001102.000101", thread_ts="1700001102.000100"))
    await bot.idle()
    assert len(slack.ephemerals) == 3 and claude_api.requests == []
    # The refused mention opened no conversation: a member's plain reply there is no paid follow-up.
    await bot.send_event(message_event("me too", channel=CHANNEL, user="U1", ts="1700001102.000102", thread_ts="1700001102.000100"))
    await bot.idle()
    assert claude_api.requests == []
    assert not await bot.runtime.store.has_conversation(ThreadKey("T1", CHANNEL, "1700001102.000100"))


async def test_guests_and_external_people_can_be_allowed(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.users["U5"] = {"is_restricted": True}
    slack.users["U7"] = {"team_id": "T9"}
    async with running_bot(with_settings(settings, allow_guests=True, allow_external_users=True), slack) as bot:
        await bot.send_event(mention_event("hi", channel=CHANNEL, user="U5", ts="1700001103.000100"))
        await bot.send_event(mention_event("hi", channel=CHANNEL, user="U7", ts="1700001103.000200"))
        await bot.wait_for(lambda: len(claude_api.requests) == 2)
        await bot.idle()
    assert slack.ephemerals == []


async def test_a_user_group_slack_could_not_list_is_asked_again_not_taken_as_empty(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.usergroups["S1"] = ["U3"]
    slack.fail("usergroups.users.list", times=1)  # when its turn runs (intake asks Slack nothing)
    async with running_bot(with_settings(settings, allowed_users=frozenset({"S1"})), slack) as bot:
        await bot.send_event(mention_event("hi", channel=CHANNEL, user="U3", ts="1700001111.000100"))
        await bot.wait_for(lambda: len(slack.ephemerals) == 1)
        claude_api.enqueue(Reply([text("hello again")]))
        await bot.send_event(mention_event("hi again", channel=CHANNEL, user="U3", ts="1700001111.000200"))
        await bot.wait_for(lambda: "hello again" in thread_text(slack, CHANNEL, "1700001111.000200"))
        await bot.idle()
    assert len(claude_api.requests) == 1


async def test_allowlists_of_channels_people_and_user_groups(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.usergroups["S1"] = ["U3"]
    allowed = with_settings(
        settings, allowed_channels=frozenset({"C2"}), allowed_users=frozenset({"U1", "S1"}), admin_users=frozenset({"U4"})
    )
    async with running_bot(allowed, slack) as bot:
        cases = [
            ("C1", "U1", "1700001104.000100"),  # channel not allowed
            ("C2", "U2", "1700001104.000200"),  # person not allowed
            ("C2", "U1", "1700001104.000300"),  # allowed person
            ("C2", "U3", "1700001104.000400"),  # allowed through the user group
            ("C1", "U4", "1700001104.000500"),  # an admin, anywhere
        ]
        for channel, user, ts in cases:
            await bot.send_event(mention_event(f"from {user} in {channel}", channel=channel, user=user, ts=ts))
        await bot.send_event(message_event("in a DM", channel="D1", user="U1", ts="1700001104.000600", channel_type="im"))
        await bot.wait_for(lambda: len(claude_api.requests) == 4 and len(slack.ephemerals) == 2)
        await bot.idle()
    asked = sorted(r["messages"][-1]["content"][0]["text"] for r in claude_api.requests)
    assert asked == sorted([said_by("U1", "from U1 in C2"), said_by("U3", "from U3 in C2"),
                            said_by("U4", "from U4 in C1"), "in a DM"])
    assert {(e["user"], e["channel"]) for e in slack.ephemerals} == {("U1", "C1"), ("U2", "C2")}
    assert "channel" in next(e["text"] for e in slack.ephemerals if e["user"] == "U1")


async def test_a_reset_deletes_the_threads_files(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    root = "1700001105.000100"
    shared = slack.add_user_file("data.csv", b"x\n1\n")
    produced = claude_api.add_file("chart.png", b"png")
    kept = claude_api.add_file("other-thread.txt", b"not this thread's")
    claude_api.enqueue(Reply([*code_run("plot", file_ids=[produced]), text("plotted")]))
    await bot.send_event(mention_event("plot it", channel=CHANNEL, user="U1", ts=root, files=[shared]))
    await bot.wait_for(lambda: "plotted" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    [upload] = claude_api.uploaded
    assert upload["id"] in claude_api.files and produced in claude_api.files

    await bot.send_event(message_event("!reset", channel=CHANNEL, user="U1", ts="1700001105.000300", thread_ts=root))
    await bot.wait_for(lambda: "reset this conversation" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert upload["id"] not in claude_api.files and produced not in claude_api.files
    assert kept in claude_api.files


async def test_idle_threads_lose_their_files_and_history_after_the_retention_period(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700001106.000100"
    produced = claude_api.add_file("result.txt", b"42")
    claude_api.enqueue(Reply([*code_run("compute", file_ids=[produced]), text("computed")]))
    # About three seconds of idleness is "30 days" here; housekeeping runs every 0.2 s.
    short = with_settings(settings, retention_days=3 / 86400, maintenance_interval_seconds=0.2)
    async with running_bot(short, slack) as bot:
        await bot.send_event(mention_event("compute", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "computed" in thread_text(slack, CHANNEL, root))
        await bot.idle()
        assert produced in claude_api.files
        await bot.wait_for(lambda: produced not in claude_api.files, timeout=20)
        await bot.send_event(message_event("what was it?", channel=CHANNEL, user="U1", ts="1700001106.000300", thread_ts=root))
        await bot.wait_for(lambda: len(claude_api.requests) == 2)
        await bot.idle()
    assert len(claude_api.requests[-1]["messages"]) == 1  # the stored history is gone
    assert container_of(claude_api.requests[-1]) is None


async def test_the_bot_token_goes_only_to_slack_file_hosts(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    seen: list[dict[str, str]] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(body=b"data")

    app = web.Application()
    app.router.add_get("/{tail:.*}", capture)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        foreign: dict[str, Any] = {**slack.add_user_file("report.csv", b"a\n"), "url_private_download": f"http://localhost:{port}/report.csv"}
        root = "1700001107.000100"
        await bot.send_event(mention_event("read this", channel=CHANNEL, user="U1", ts=root, files=[foreign]))
        await bot.wait_for(lambda: "not on a Slack file host" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    finally:
        await runner.cleanup()
    assert seen == []


async def test_audit_lines_are_json_with_log_format_json(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.users["U5"] = {"is_restricted": True}
    env = bot_process_env(tmp_path, slack, claude_api, LOG_FORMAT="json")
    async with http_bots(1, env, tmp_path) as (bot,):
        await bot.send_event(mention_event("let me in", channel=CHANNEL, user="U5", ts="1700001108.000100"))
        await wait_for(lambda: len(slack.ephemerals) == 1, timeout=20)
        log_path: Path = bot.process.log_path  # type: ignore[attr-defined]
        await wait_for(lambda: '"audit"' in log_path.read_text(), timeout=10)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    [refusal] = [line for line in lines if line.get("audit", {}).get("event") == "refused"]
    assert refusal["audit"] == {"event": "refused", "reason": "guest", "user": "U5", "team": "T1",
                                "channel": CHANNEL, "thread_ts": "1700001108.000100"}
    assert not any("let me in" in json.dumps(line) for line in lines)  # ids, never message text


async def test_mention_mode_answers_only_mentions_and_hands_the_rest_over_as_context(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700001109.000100"
    slack.users["U5"] = {"is_restricted": True}
    async with running_bot(with_settings(settings, follow_ups="mention"), slack) as bot:
        await start_thread(bot, slack, root)
        for user, ts, words in (("U2", "1700001109.000200", "thanks!"), ("U5", "1700001109.000250", "guest chatter"),
                                ("U3", "1700001109.000300", "the numbers look off for March")):
            await bot.send_event(message_event(words, channel=CHANNEL, user=user, ts=ts, thread_ts=root))
        await bot.idle()
        assert len(claude_api.requests) == 1  # plain follow-ups start no turn
        await bot.send_event(
            message_event("<@UBOT> can you check?", channel=CHANNEL, user="U1", ts="1700001109.000400", thread_ts=root)
        )
        await bot.wait_for(lambda: len(claude_api.requests) == 2)
        await bot.idle()
        await bot.send_event(message_event("<@UBOT> and now?", channel=CHANNEL, user="U1", ts="1700001109.000500", thread_ts=root))
        await bot.wait_for(lambda: len(claude_api.requests) == 3)
        await bot.idle()
    asked = " ".join(block["text"] for block in claude_api.requests[1]["messages"][-1]["content"] if block["type"] == "text")
    assert "u2: thanks!" in asked and "u3: the numbers look off for March" in asked
    assert "guest chatter" not in asked  # a refused person's words never reach the model
    assert asked.index("thanks!") < asked.index("the numbers") < asked.index("can you check?")
    latest = " ".join(b["text"] for b in claude_api.requests[2]["messages"][-1]["content"] if b["type"] == "text")
    assert "thanks!" not in latest  # handed over once


async def test_daily_budgets_stop_people_and_the_workspace_and_reset_the_next_day(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    spend = {"input_tokens": 600, "output_tokens": 500, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    limited = with_settings(
        settings,
        user_daily_budget=Budget(1000),
        workspace_daily_budget=Budget(3000),
        admin_users=frozenset({"U4"}),
    )
    async with running_bot(limited, slack) as bot:
        for n, user in enumerate(("U1", "U1", "U2", "U3", "U4")):
            if n != 1:  # the second question of U1 must never reach the model
                claude_api.enqueue(Reply([text(f"answer {n}")], usage=spend))
            await bot.send_event(mention_event(f"question {n}", channel=CHANNEL, user=user, ts=f"1700001110.00{n}100"))
            await bot.wait_for(lambda n=n: len(slack.thread(CHANNEL, f"1700001110.00{n}100")) >= 1)
            await bot.idle()
        texts = [thread_text(slack, CHANNEL, f"1700001110.00{n}100") for n in range(5)]
        assert "answer 0" in texts[0]
        assert "Your daily threadbox budget" in texts[1] and "resets at 00:00 UTC" in texts[1]
        assert "answer 2" in texts[2]  # U2's own first turn; the workspace has now spent 2,200
        assert "answer 3" in texts[3]  # 3,300 spent after it
        assert "answer 4" in texts[4]  # admins are exempt
        assert len(claude_api.requests) == 4

        # Another person now meets the workspace's budget.
        await bot.send_event(mention_event("one more", channel=CHANNEL, user="U6", ts="1700001110.009100"))
        await bot.wait_for(lambda: "This workspace's daily threadbox budget" in thread_text(slack, CHANNEL, "1700001110.009100"))

        # A day later the budgets start again.
        await run_sql(limited.database_url, "UPDATE usage SET recorded_at = recorded_at - 86400;")
        claude_api.enqueue(Reply([text("a new day")], usage=spend))
        await bot.send_event(mention_event("again", channel=CHANNEL, user="U1", ts="1700001110.010100"))
        await bot.wait_for(lambda: "a new day" in thread_text(slack, CHANNEL, "1700001110.010100"))
        await bot.idle()
    assert len(claude_api.requests) == 5


async def test_a_late_mention_never_hands_the_model_what_refused_people_wrote(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700001120.000100"
    slack.users["U5"] = {"is_restricted": True}  # a guest
    slack.users["U7"] = {"team_id": "T9"}  # someone from another organisation
    slack.add_message(CHANNEL, "The build is red", user="U2", ts=root)
    slack.add_message(CHANNEL, "guest secret plan", user="U5", ts="1700001120.000200", thread_ts=root)
    slack.add_message(CHANNEL, "partner secret plan", user="U7", ts="1700001120.000300", thread_ts=root)
    slack.add_message(CHANNEL, "I'll look at it", user="U3", ts="1700001120.000400", thread_ts=root)
    await bot.send_event(mention_event("what happened?", channel=CHANNEL, user="U1", ts="1700001120.000500", thread_ts=root))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()
    sent = str(claude_api.requests[0]["messages"])
    assert "The build is red" in sent and "I'll look at it" in sent
    assert "secret plan" not in sent


async def test_a_burst_is_held_to_the_budget_by_what_running_turns_reserve(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    """Three questions at once: each running turn has booked its input before its request, so
    the budget sees them before any usage is recorded (before, all three ran)."""
    question = "Summarize this: " + "lorem ipsum dolor sit amet " * 150  # about 1,000 tokens
    limited = with_settings(settings, user_daily_budget=Budget(2500))
    async with running_bot(limited, slack) as bot:
        roots = [f"1700001130.00{n}100" for n in range(3)]
        for n, root in enumerate(roots[:2]):
            claude_api.enqueue(Reply([text(f"answer {n}")], delay=3.0))
            await bot.send_event(mention_event(question, channel=CHANNEL, user="U1", ts=root))
            await bot.wait_for(lambda n=n: len(claude_api.requests) == n + 1)
        assert await bot.runtime.store.reserved_input("T1", "U1") > 2000
        await bot.send_event(mention_event("usage", channel=CHANNEL, user="U1", ts="1700001130.009100"))
        await bot.wait_for(lambda: "Reserved by your answers running now" in thread_text(slack, CHANNEL, "1700001130.009100"))
        await bot.send_event(mention_event(question, channel=CHANNEL, user="U1", ts=roots[2]))
        await bot.wait_for(lambda: "Your daily threadbox budget" in thread_text(slack, CHANNEL, roots[2]))
        await bot.wait_for(lambda: all(f"answer {n}" in thread_text(slack, CHANNEL, roots[n]) for n in range(2)))
        await bot.idle()
        assert await bot.runtime.store.reserved_input("T1") == 0  # released as the turns finished
    assert len(claude_api.requests) == 2


async def test_a_turn_whose_continuation_would_pass_the_budget_ends_there_with_words(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    limited = with_settings(settings, user_daily_budget=Budget(5000))
    paused = {"input_tokens": 4000, "output_tokens": 1500, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    root = "1700001131.000100"
    async with running_bot(limited, slack) as bot:
        claude_api.enqueue(Reply([*code_run("python long.py", stdout="step 1 done")], stop_reason="pause_turn",
                                 usage=paused))
        await bot.send_event(mention_event("a long job", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "I stopped here" in thread_text(slack, CHANNEL, root))
        await bot.idle()
        spent = await bot.runtime.store.thread_usage(ThreadKey("T1", CHANNEL, root))
    assert len(claude_api.requests) == 1  # the continuation never went out
    assert spent.input_tokens == 4000 and spent.code_runs == 1  # what was done is booked and kept
