"""Scheduled runs: the forms `!schedule` reads (against croniter, across time zones and a
daylight-saving change), runs in the thread's container, exactly once across processes, a
recovery after downtime, and the buttons that pause, resume and delete."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bot.config import Settings
from bot.policy.budgets import Budget
from bot.schedules.clock import ScheduleClock
from bot.schedules.when import DAYS, WhenError, read_schedule
from bot.workspaces import WorkspaceResolver
from storage import Schedule, ThreadKey, TurnLimits, open_store
from tests.conftest import BotServer, long_running_reply, run_sql, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import home_opened_event, mention_event, message_event

CHANNEL = "C1"
ZONES = ("Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Adelaide", "UTC")
NOW = datetime(2026, 12, 2, 5, 0, tzinfo=ZoneInfo("UTC")).timestamp()


# --- the forms ------------------------------------------------------------------------------

@hypothesis_settings(max_examples=150, deadline=None)
@given(st.sampled_from(ZONES), st.integers(0, 23), st.integers(0, 59), st.sampled_from(("day", "weekday", *DAYS)),
       st.floats(0, 400 * 86400))
def test_every_form_runs_next_when_croniter_says_at_that_local_time(
    tz: str, hour: int, minute: int, which: str, offset: float
) -> None:
    now = NOW + offset
    rule, request = read_schedule(f"every {which} at {hour:02d}:{minute:02d} pull the numbers", tz, now)
    assert request == "pull the numbers"
    first = rule.first(now)
    days = {"day": "*", "weekday": "1-5"}.get(which, str((DAYS.index(which) + 1) % 7) if which in DAYS else "*")
    expected = croniter(f"{minute} {hour} * * {days}", datetime.fromtimestamp(now, ZoneInfo(tz))).get_next(float)
    assert first == expected and first > now
    local = datetime.fromtimestamp(first, ZoneInfo(tz))
    if which not in ("day", "weekday"):
        assert local.strftime("%A").lower() == which
    assert rule.following(first, first + 1) == rule.next_after(first + 1) > first


def test_a_daily_run_keeps_its_local_time_across_a_daylight_saving_change() -> None:
    before = datetime(2027, 3, 27, 12, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    rule, _ = read_schedule("every day at 09:00 report", "Europe/Paris", before)
    sunday = rule.first(before)  # 28 March 2027: clocks go forward at 02:00
    monday = rule.following(sunday, sunday)
    assert monday is not None
    assert [datetime.fromtimestamp(t, ZoneInfo("Europe/Paris")).strftime("%d %H:%M %Z") for t in (sunday, monday)] == [
        "28 09:00 CEST", "29 09:00 CEST",
    ]
    saturday = rule.next_after(before - 86400)
    assert saturday is not None and sunday - saturday == 23 * 3600  # that day is an hour short


def test_the_other_forms_and_what_is_refused() -> None:
    tz = "Europe/Paris"
    every, _ = read_schedule("every 2 hours check the build", tz, NOW)
    assert (every.kind, every.first(NOW) - NOW, every.following(NOW + 7200, NOW + 7200 * 3.5)) == (
        "every", 7200.0, NOW + 7200 * 4,  # missed runs are run once, not once each
    )
    once, request = read_schedule("at 2027-01-05 10:00 send the summary", tz, NOW)
    assert once.kind == "once" and request == "send the summary" and once.following(once.first(NOW), NOW) is None
    assert datetime.fromtimestamp(once.first(NOW), ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") == "2027-01-05 10:00"
    later, _ = read_schedule("at 07:30 remind me", tz, NOW)  # 06:00 in Paris now: today at 07:30
    assert later.first(NOW) - NOW == 90 * 60
    cron, _ = read_schedule('cron "*/30 9-17 * * 1-5" look', tz, NOW)
    assert cron.shortest_gap(NOW) == 1800
    for wrong in ("tomorrow please", "every day at 25:00 x", "at 2020-01-01 10:00 x", 'cron "61 * * * *" x',
                  "every day at 09:00", "at 2027-02-30 10:00 x"):
        with pytest.raises(WhenError):
            read_schedule(wrong, tz, NOW)


# --- runs through the bot ---------------------------------------------------------------------

async def make_due(bot: BotServer, schedule_id: int) -> None:
    """Bring a schedule's next occurrence to now, as if its time had come (the clock, polling
    every half second here, finds it)."""
    await run_sql(bot.settings.database_url, f"UPDATE schedules SET next_at = {time.time()} WHERE id = {schedule_id};")


async def scheduled(bot: BotServer, slack: FakeSlack, root: str, words: str, n: int) -> Schedule:
    await bot.send_event(message_event(f"!schedule {words}", channel=CHANNEL, user="U1",
                                       ts=f"{root[:-6]}{n:06d}", thread_ts=root))
    await bot.wait_for(lambda: "Scheduled (#" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    [made] = await bot.runtime.store.thread_schedules(ThreadKey("T1", CHANNEL, root))
    return made


async def test_a_one_time_schedule_runs_once_in_the_threads_container_with_its_files(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700009001.000100"
    async with running_bot(replace(settings_on_each_store, queue_poll_seconds=0.5), slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("ready")]), "set up", root=root, shows="ready")
        container = claude_api.requests[0]
        made = await scheduled(bot, slack, root, "at 23:59 chart the sales", 200)
        said = thread_text(slack, CHANNEL, root)
        assert "Next run: *" in said and "(Europe/Paris)" in said and "A reset does not cancel it" in said
        chart = claude_api.add_file("sales.png", b"png")
        claude_api.enqueue(Reply([*code_run("make chart", file_ids=[chart]), text("Chart made.")]))
        await make_due(bot, made.id)
        await bot.wait_for(lambda: "Chart made." in thread_text(slack, CHANNEL, root), timeout=15)
        await bot.wait_for(lambda: len(slack.uploads) == 1)
        await asyncio.sleep(1.5)  # a second poll finds nothing more to run
        await bot.idle()
        after = await bot.runtime.store.schedule(made.id)
    run = claude_api.requests[-1]
    assert len(claude_api.requests) == 2 and "chart the sales" in json.dumps(run["messages"][-1])
    assert run["container"]["id"] == claude_api.requests[-1]["container"]["id"] and "id" not in container["container"]
    assert len(run["messages"]) == 3  # the thread's history came with it
    assert after is not None and after.state == "done" and (after.last_outcome or "").startswith("answered")


async def test_a_recurring_schedule_runs_again_and_a_missed_stretch_runs_once_late_with_a_note(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700009002.000100"
    quick = replace(settings, queue_poll_seconds=0.5, schedule_min_interval_seconds=60.0)
    async with running_bot(quick, slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("ready")]), "set up", root=root, shows="ready")
        made = await scheduled(bot, slack, root, "every 1 minutes count the rows", 200)
        claude_api.enqueue(Reply([text("Run one.")]), Reply([text("Run two.")]), Reply([text("Run three.")]))
        await make_due(bot, made.id)
        await bot.wait_for(lambda: "Run one." in thread_text(slack, CHANNEL, root))
        moved = await bot.runtime.store.schedule(made.id)
        assert moved is not None and moved.next_at is not None and moved.next_at > time.time()
        await make_due(bot, made.id)
        await bot.wait_for(lambda: "Run two." in thread_text(slack, CHANNEL, root))
        await bot.idle()
    # Down across two occurrences: on recovery it runs once, saying how late.
    await run_sql(quick.database_url, f"UPDATE schedules SET next_at = {time.time() - 150} WHERE id = {made.id};")
    async with running_bot(quick, slack) as bot:
        await bot.wait_for(lambda: "Run three." in thread_text(slack, CHANNEL, root), timeout=15)
        await asyncio.sleep(1.5)
        await bot.idle()
        after = await bot.runtime.store.schedule(made.id)
    said = thread_text(slack, CHANNEL, root)
    assert said.count("while threadbox was not running") == 1 and "2 minutes ago" in said
    assert len(claude_api.requests) == 4 and after is not None and after.next_at and after.next_at > time.time()


async def test_two_processes_on_postgresql_never_fire_an_occurrence_twice(postgres_url: str) -> None:
    stores = [await open_store(postgres_url) for _ in range(4)]
    try:
        thread = ThreadKey("T1", "C1", "1700009003.000100")
        rule, request = read_schedule("every 1 hours report", "UTC", time.time())
        made = await stores[0].create_schedule(thread, "U1", request, rule.kind, rule.spec, "UTC", time.time() - 1)
        clocks = [ScheduleClock(store, _NoWorkspaces(), poll_seconds=1) for store in stores]
        for _ in range(3):
            due = await stores[0].schedule(made.id)
            assert due is not None
            fired = await asyncio.gather(*(clock.fire(due) for clock in clocks))
            assert sorted(fired) == [False, False, False, True]
            await run_sql(postgres_url, f"UPDATE schedules SET next_at = {time.time() - 1} WHERE id = {made.id};")
        counted = await stores[0].connector.one("count_waiting")
    finally:
        for store in stores:
            await store.close()
    assert counted is not None and counted[0] == 3  # one run per occurrence


class _NoWorkspaces(WorkspaceResolver):
    async def resolve(self, team_id: str | None, enterprise_id: str | None = None) -> None:
        return None


async def test_the_buttons_pause_resume_and_delete_and_refuse_outsiders(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700009004.000100"
    async with running_bot(settings, slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("ready")]), "set up", root=root, shows="ready")
        made = await scheduled(bot, slack, root, "every day at 09:00 pull the numbers", 200)
        await bot.send_event(message_event("!schedules", channel=CHANNEL, user="U1", ts=f"{root[:-6]}000300",
                                           thread_ts=root))
        def listing_message() -> dict | None:
            return next((m for m in slack.thread(CHANNEL, root) if "schedule_pause" in json.dumps(m.get("blocks"))), None)

        await bot.wait_for(lambda: listing_message() is not None)
        listing = listing_message()
        assert listing is not None
        buttons = {e["action_id"]: e for b in listing["blocks"] if b["type"] == "actions" for e in b["elements"]}
        assert set(buttons) == {"schedule_pause", "schedule_delete"} and "by <@U1>" in listing["text"]
        store = bot.runtime.store

        async def press(action_id: str, user: str) -> str:
            url = slack.new_response_url()
            await bot.send_action(action_id, buttons.get(action_id, buttons["schedule_pause"])["value"],
                                  channel_id=CHANNEL, user_id=user, response_url=url, message=listing)
            await bot.wait_for(lambda: bool(slack.responses[url]))
            return str(slack.responses[url][0]["text"])

        assert "Only the person who made this schedule" in await press("schedule_pause", "U9")
        assert (await store.schedule(made.id)).state == "active"  # type: ignore[union-attr]
        assert "paused" in await press("schedule_pause", "U1")
        assert (await store.schedule(made.id)).state == "paused"  # type: ignore[union-attr]
        assert "resumed" in await press("schedule_resume", "U1")
        resumed = await store.schedule(made.id)
        assert resumed is not None and resumed.state == "active" and resumed.next_at and resumed.next_at > time.time()
        assert "deleted" in await press("schedule_delete", "U1")
        assert await store.thread_schedules(ThreadKey("T1", CHANNEL, root)) == []


async def test_a_run_its_person_may_no_longer_make_is_skipped_and_three_pause_the_schedule(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700009005.000100"
    async with running_bot(replace(settings, queue_poll_seconds=0.5, user_daily_budget=Budget(1)), slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("ready")]), "set up", root=root, shows="ready")
        made = await scheduled(bot, slack, root, "every day at 09:00 pull the numbers", 200)
        for n in range(3):  # the first turn spent U1's whole budget: each run is skipped
            await make_due(bot, made.id)
            for _ in range(200):
                state = await bot.runtime.store.schedule(made.id)
                if state is not None and state.skipped == n + 1:
                    break
                await asyncio.sleep(0.05)
            assert state is not None and state.skipped == n + 1
        await bot.idle()
        after = await bot.runtime.store.schedule(made.id)
    assert after is not None and after.state == "paused" and after.skipped == 3
    private = [m for m in slack.ephemerals if m.get("user") == "U1"]
    assert any("paused" in m.get("text", "") for m in private)
    assert len(claude_api.requests) == 1  # no run reached the model


async def test_the_home_tab_lists_a_persons_schedules_and_admins_see_the_workspaces(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700009006.000100"
    async with running_bot(replace(settings, admin_users=frozenset({"UADMIN"})), slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("ready")]), "set up", root=root, shows="ready")
        await scheduled(bot, slack, root, "every monday at 08:00 rebuild the report", 200)
        for user in ("U1", "U2", "UADMIN"):
            await bot.send_event(home_opened_event(user))
        await bot.wait_for(lambda: {"U1", "U2", "UADMIN"} <= set(slack.home_views))
    mine, others, admin = (json.dumps(slack.home_views[u]) for u in ("U1", "U2", "UADMIN"))
    assert "Your schedules" in mine and "rebuild the report" in mine and "in <#C1>" in mine
    assert "rebuild the report" not in others
    assert "The workspace's schedules" in admin and "rebuild the report" in admin


async def test_too_frequent_schedules_and_too_many_are_refused_with_words(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700009007.000100"
    async with running_bot(replace(settings, max_schedules_per_person=1), slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("ready")]), "set up", root=root, shows="ready")
        for n, words in enumerate(("every 5 minutes poll", 'cron "*/10 * * * *" poll', "whenever you like poll",
                                   "every day at 09:00 report", "every day at 10:00 another"), start=2):
            await bot.send_event(message_event(f"!schedule {words}", channel=CHANNEL, user="U1",
                                               ts=f"{root[:-6]}{n:06d}", thread_ts=root))
        await bot.wait_for(lambda: "You have 1 schedules already" in thread_text(slack, CHANNEL, root))
        await bot.idle()
        made = await bot.runtime.store.thread_schedules(ThreadKey("T1", CHANNEL, root))
    said = thread_text(slack, CHANNEL, root)
    assert said.count("a schedule may run at most every 60 minutes") == 2
    assert "`every day at HH:MM`" in said  # the accepted forms, for the one it could not read
    assert [s.request for s in made] == ["report"]


async def test_a_run_a_cap_holds_back_is_told_but_never_reacted_to(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    """A scheduled run has no Slack message of its own: the note that it waits reaches its
    person, and no ⏳ goes looking for a message that is not there."""
    root, busy = "1700009007.000100", "1700009008.000100"
    quick = replace(settings, queue_poll_seconds=0.5, turn_limits=TurnLimits(per_person=1))
    async with running_bot(quick, slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("ready")]), "set up", root=root, shows="ready")
        made = await scheduled(bot, slack, root, "every day at 09:00 pull the numbers", 200)
        claude_api.enqueue(long_running_reply("busy"))
        await bot.send_event(mention_event("a long one", channel=CHANNEL, user="U1", ts=busy))
        await bot.wait_for(lambda: "busy" in thread_text(slack, CHANNEL, busy))
        claude_api.enqueue(Reply([text("numbers pulled")]))
        await make_due(bot, made.id)
        await bot.wait_for(lambda: any("answers running" in m.get("text", "") for m in slack.ephemerals))
        await bot.wait_for(lambda: "numbers pulled" in thread_text(slack, CHANNEL, root), timeout=60)
        await bot.idle()
    stamps = [str(a.get("timestamp")) for a in slack.calls_to("reactions.add") + slack.calls_to("reactions.remove")]
    assert not [s for s in stamps if s.startswith("schedule-")]
