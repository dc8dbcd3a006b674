"""Many workspaces: installs by Slack's OAuth flow (two workspaces and an Enterprise Grid org),
each request answered with its install's token, data kept apart, token rotation on the
request path and in background work, and an uninstall that forgets that workspace only.

Everything goes through the real flow: the bot's `/slack/install` page, the fake Slack's
authorize page, the bot's `/slack/oauth_redirect` with the state cookie, `oauth.v2.access`.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from bot.app import create_runtime
from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.http import serve_operations, socket_mode_handler
from storage import ThreadKey
from tests.conftest import SIGNING_SECRET, BotServer, container_of, run_sql, running_bot, thread_text, wait_for
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import event_body, home_opened_event, mention_event, message_event
from tests.fakes.slack_installs import CLIENT_ID, CLIENT_SECRET, TOKEN_SECONDS, Installation

STATE_COOKIE = "slack-app-oauth-state"


def oauth_env(slack: FakeSlack, claude_api: FakeAnthropic, database_url: str) -> dict[str, str]:
    return {
        "SLACK_CLIENT_ID": CLIENT_ID,
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
        "ANTHROPIC_API_KEY": claude_api.api_key,
        "DATABASE_URL": database_url,
    }


@pytest.fixture
def oauth_settings(
    slack: FakeSlack, claude_api: FakeAnthropic, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Installing by OAuth, on SQLite and then on PostgreSQL; workspaces T2 and T3, and the
    Grid org E1 with workspaces T4 and T5."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude_api.base_url)
    for team, org in (("T2", None), ("T3", None), ("T4", "E1"), ("T5", "E1")):
        slack.installs.add_workspace(team, org)
    for channel, team, people in (("C2", "T2", ["U21", "U22", "U29"]), ("C3", "T3", ["U31", "U39"]),
                                  ("C4", "T4", ["W41", "W42"]), ("C5", "T5", ["W51"])):
        slack.installs.place_channel(channel, team)
        slack.members[channel] = people
    for person, team in (("U21", "T2"), ("U31", "T3")):
        slack.users[person] = {"team_id": team}
    for person, team in (("W41", "T4"), ("W51", "T5")):
        slack.users[person] = {"team_id": team, "enterprise_user": {"enterprise_id": "E1", "teams": [team]}}
    return load_settings(oauth_env(slack, claude_api, database_url), dotenv=False)


async def start_install(browser: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    """Open the bot's "Add to Slack" page: the state its cookie holds, and its link to Slack."""
    async with browser.get(f"{url}/slack/install", allow_redirects=False) as page:
        assert page.status == 200, await page.text()
        body = await page.text()
        state = page.cookies[STATE_COOKIE].value
    match = re.search(r'href="([^"]*/oauth/v2/authorize\?[^"]*)"', body)
    assert match is not None, body
    return state, html.unescape(match.group(1))


async def install(url: str, slack: FakeSlack, team: str, *, org: bool = False) -> Installation:
    """A person adds threadbox to `team` (org-wide, with `org`) through the install page the bot
    serves at `url`."""
    slack.installs.redirect_uri = f"{url}/slack/oauth_redirect"
    async with aiohttp.ClientSession() as browser:
        state, link = await start_install(browser, url)
        authorize = link + f"&team={team}" + ("&org=1" if org else "")
        async with browser.get(authorize, allow_redirects=False) as approved:
            assert approved.status == 302, await approved.text()
            back = approved.headers["Location"]
        async with browser.get(back, headers={"Cookie": f"{STATE_COOKIE}={state}"}, allow_redirects=False) as done:
            assert done.status == 200, await done.text()
            assert "Thank you" in await done.text() or "success" in (await done.text()).lower()
    return slack.installs.of("E1" if org and team in ("T4", "T5") else team)


async def send(
    bot: BotServer, event: dict[str, Any], install: Installation, *, team: str, shared: bool = False
) -> int:
    """An event as Slack delivers it to that install (for an org-wide one, from workspace `team`)."""
    body = event_body(
        event, team_id=team, bot_user_id=install.bot_user_id, enterprise_id=install.enterprise_id,
        org_install=install.is_enterprise_install, shared=shared,
    )
    status, _ = await bot.post(body, "application/json")
    return status


def tokens_in(slack: FakeSlack, channel: str) -> set[str]:
    """The tokens of every Web API call made about a channel."""
    return {
        call.headers.get("Authorization", "")[7:]
        for call in slack.calls
        if (call.args.get("channel") or call.args.get("channel_id")) == channel
    }


def refreshes(slack: FakeSlack) -> list[dict[str, Any]]:
    return [args for args in slack.calls_to("oauth.v2.access") if args.get("grant_type") == "refresh_token"]


async def ask(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, install: Installation, *, channel: str, user: str,
    root: str, words: str, team: str | None = None,
) -> None:
    claude_api.enqueue(Reply([text(words)]))
    assert await send(bot, mention_event("go", channel=channel, user=user, ts=root, bot_user_id=install.bot_user_id,
                                         team=team or install.key), install, team=team or install.key) == 200
    await bot.wait_for(lambda: words in thread_text(slack, channel, root))


async def test_two_workspaces_and_an_org_each_answered_with_their_own_token_and_kept_apart(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    slack.users["W42"] = {"team_id": "T5", "enterprise_user": {"enterprise_id": "E1", "is_admin": True}}
    async with running_bot(oauth_settings, slack) as bot:
        t2, t3 = await install(bot.url, slack, "T2"), await install(bot.url, slack, "T3")
        org = await install(bot.url, slack, "T4", org=True)
        assert org.is_enterprise_install and org.enterprise_id == "E1" and org.team_id is None
        await ask(bot, slack, claude_api, t2, channel="C2", user="U21", root="1700000002.000100", words="two")
        await ask(bot, slack, claude_api, t3, channel="C3", user="U31", root="1700000003.000100", words="three")
        # The org's install serves both of its workspaces; W51 (of T5) is a colleague there.
        await ask(bot, slack, claude_api, org, channel="C4", user="W41", root="1700000004.000100", words="four",
                  team="T4")
        await ask(bot, slack, claude_api, org, channel="C5", user="W51", root="1700000005.000100", words="five",
                  team="T5")
        await send(bot, home_opened_event("U21"), t2, team="T2")
        await bot.wait_for(lambda: "U21" in slack.home_views)
        await bot.idle()
        org_space, t2_space = await bot.runtime.engine.workspaces.resolve("T5", "E1"), await bot.runtime.engine.workspaces.resolve("T2")
        assert org_space is not None and t2_space is not None
        assert await org_space.access.is_workspace_admin("W42") and not await t2_space.access.is_workspace_admin("W42")
        store = bot.runtime.store
        kept = {(key, person): await store.person_threads(key, person) for key, person in
                (("T2", "U21"), ("T3", "U31"), ("E1", "W41"), ("E1", "W51"), ("T2", "U31"), ("T3", "U21"))}
    assert tokens_in(slack, "C2") == {t2.token} and tokens_in(slack, "C3") == {t3.token}
    assert tokens_in(slack, "C4") == {org.token} == tokens_in(slack, "C5")
    assert len({t2.token, t3.token, org.token}) == 3
    [c2], [c3] = kept[("T2", "U21")], kept[("T3", "U31")]
    assert (c2.thread, c3.thread) == (ThreadKey("T2", "C2", "1700000002.000100"), ThreadKey("T3", "C3", "1700000003.000100"))
    assert [t.thread.channel_id for t in kept[("E1", "W41")] + kept[("E1", "W51")]] == ["C4", "C5"]
    assert kept[("T2", "U31")] == kept[("T3", "U21")] == []  # neither workspace sees the other's
    # The stream in the org's workspaces names the person's own workspace, not the org.
    streams = {args["channel"]: args.get("recipient_team_id") for args in slack.calls_to("chat.startStream")}
    assert streams == {"C2": "T2", "C3": "T3", "C4": "T4", "C5": "T5"}
    home = json.dumps(slack.home_views["U21"])
    assert "C2" in home and "C3" not in home and "C4" not in home
    assert [c.headers["Authorization"] for c in slack.calls if c.method == "views.publish"] == [f"Bearer {t2.token}"]
    assert not any(token in caplog.text for token in (t2.token, t3.token, org.token, CLIENT_SECRET))


async def test_a_workspace_threadbox_is_not_installed_in_is_acknowledged_and_ignored(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(oauth_settings, slack) as bot:
        stranger = Installation("T3", None, "UBOTX", "BBOTX", "xoxb-never-issued", ())
        status = await send(bot, mention_event("hello", channel="C3", user="U31", ts="1700000010.000100"),
                            stranger, team="T3")
        await asyncio.sleep(0.5)
        await bot.idle()
    assert status == 200 and claude_api.requests == [] and slack.calls_to("chat.postMessage") == []


async def test_a_thread_in_a_channel_two_installs_share_is_answered_once(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.installs.place_channel("CX", "T2", "T3")  # a Slack Connect channel between T2 and T3
    slack.users["U31"] = {"team_id": "T3"}
    root = "1700000020.000100"
    async with running_bot(replace(oauth_settings, allow_external_users=True), slack) as bot:
        t2, t3 = await install(bot.url, slack, "T2"), await install(bot.url, slack, "T3")
        claude_api.enqueue(Reply([text("answered once")]))
        mention = mention_event("go", channel="CX", user="U21", ts=root)
        # Slack brings the message through each install: through T2's first, then T3's.
        assert await send(bot, mention, t2, team="T2", shared=True) == 200
        assert await send(bot, mention, t3, team="T3", shared=True) == 200
        await bot.wait_for(lambda: "answered once" in thread_text(slack, "CX", root))
        claude_api.enqueue(Reply([text("and followed")]))
        follow = message_event("more", channel="CX", user="U31", ts="1700000020.000200", thread_ts=root)
        assert await send(bot, follow, t3, team="T3", shared=True) == 200
        await bot.wait_for(lambda: "and followed" in thread_text(slack, "CX", root))
        # A command through T3's install (commands do not say the channel is shared) is the
        # channel's answering install's too.
        slack.members["CX"] = ["U21", "U31"]
        assert await bot.send_command("settings", command="/threadbox", channel_id="CX", user_id="U31",
                                      team_id="T3") == 200
        await bot.wait_for(lambda: bool(slack.modals))
        await bot.idle()
    assert [c.headers["Authorization"] for c in slack.calls if c.method == "views.open"] == [f"Bearer {t2.token}"]
    assert len(claude_api.requests) == 2
    assert len(claude_api.requests[1]["messages"]) == 3  # the same conversation, whoever brought it
    assert tokens_in(slack, "CX") == {t2.token}


@asynccontextmanager
async def rotating(slack: FakeSlack) -> AsyncIterator[None]:
    """Token rotation on, tokens that reach Bolt's refresh window (2 hours before they end) a
    few seconds after they are issued."""
    slack.installs.rotation = True
    slack.installs.token_seconds = 2 * 3600 + 3
    yield
    slack.installs.token_seconds = TOKEN_SECONDS


async def test_a_rotating_token_is_refreshed_before_it_expires_by_requests_and_by_background_work(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with rotating(slack), running_bot(replace(oauth_settings, queue_poll_seconds=0.5), slack) as bot:
        t2 = await install(bot.url, slack, "T2")
        first = t2.token
        assert first.startswith("xoxe.xoxb-") and t2.refresh_token
        root = "1700000030.000100"
        await ask(bot, slack, claude_api, t2, channel="C2", user="U21", root=root, words="made")
        assert refreshes(slack) == []  # fresh for a while yet
        claude_api.enqueue(Reply([text("scheduled")]))
        await send(bot, message_event("!schedule every day at 09:00 run the report", channel="C2", user="U21",
                                      ts="1700000030.000200", thread_ts=root), t2, team="T2")
        await bot.wait_for(lambda: "Scheduled (#" in thread_text(slack, "C2", root))
        await bot.idle()
        await asyncio.sleep(3.5)  # the token is now within two hours of its end
        # Background work: the schedule fires with no request from Slack to refresh it.
        calls_before = len(slack.calls)
        [made] = await bot.runtime.store.thread_schedules(ThreadKey("T2", "C2", root))
        await run_sql(bot.settings.database_url, f"UPDATE schedules SET next_at = {time.time()} WHERE id = {made.id};")
        await bot.wait_for(lambda: "scheduled" in thread_text(slack, "C2", root).split("Scheduled (#")[-1])
        await bot.idle()
        second = slack.installs.of("T2").token
        background = [c for c in slack.calls[calls_before:] if c.method == "oauth.v2.access"]
        assert len(background) == 1 and second != first
        assert tokens_in(slack, "C2") >= {first, second}
        answered_with = {c.headers.get("Authorization", "")[7:] for c in slack.calls[calls_before:]
                         if c.method.startswith("chat.") and c.args.get("channel") == "C2"}
        assert answered_with == {second}
        await asyncio.sleep(3.5)  # and the second token reaches its refresh window
        # The request path: Bolt's authorize refreshes as the mention arrives.
        await ask(bot, slack, claude_api, slack.installs.of("T2"), channel="C2", user="U21",
                  root="1700000031.000100", words="again")
        third = slack.installs.of("T2").token
        await bot.idle()
    assert len(refreshes(slack)) == 2 and third not in (first, second)
    assert [c.args for c in slack.calls if c.method == "oauth.v2.access" and "error" in json.dumps(c.args)] == []


def test_both_slack_modes_at_once_is_refused_with_which_to_drop(slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    env = oauth_env(slack, claude_api, "sqlite:///x.db")
    with pytest.raises(ConfigError, match="unset SLACK_BOT_TOKEN to install by OAuth"):
        load_settings({**env, "SLACK_BOT_TOKEN": "xoxb-1"}, dotenv=False)
    with pytest.raises(ConfigError, match="SLACK_CLIENT_ID is set without SLACK_CLIENT_SECRET"):
        load_settings({**env, "SLACK_CLIENT_SECRET": ""}, dotenv=False)
    env.pop("SLACK_CLIENT_ID"), env.pop("SLACK_CLIENT_SECRET")
    with pytest.raises(ConfigError, match="or set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET instead"):
        load_settings(env, dotenv=False)


async def test_an_uninstall_deletes_that_workspaces_data_and_files_and_nothing_else(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="bot.audit")
    root2, root3 = "1700000040.000100", "1700000041.000100"
    async with running_bot(oauth_settings, slack) as bot:
        t2, t3 = await install(bot.url, slack, "T2"), await install(bot.url, slack, "T3")
        for install_, channel, person, root in ((t2, "C2", "U21", root2), (t3, "C3", "U31", root3)):
            shared = slack.add_user_file(f"{channel}.csv", b"a,b\n1,2\n")
            claude_api.enqueue(Reply([text(f"read {channel}")]))
            await send(bot, mention_event("read it", channel=channel, user=person, ts=root, files=[shared],
                                          bot_user_id=install_.bot_user_id), install_, team=install_.key)
            await bot.wait_for(lambda c=channel, r=root: f"read {c}" in thread_text(slack, c, r))
        await bot.idle()
        store = bot.runtime.store
        files_before = set(claude_api.files)
        assert len(files_before) == 2
        slack.installs.uninstall("T2")  # Slack revokes the tokens, then tells the app
        assert await send(bot, {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"}, t2, team="T2") == 200
        await bot.idle()
        assert await store.find_installation("T2") is None and await store.find_installation("T3") is not None
        assert await store.person_threads("T2", "U21") == [] and (await store.team_usage("T2", since=0)).input_tokens == 0
        assert len(await store.person_threads("T3", "U31")) == 1 and (await store.team_usage("T3", since=0)).input_tokens
        assert len(set(claude_api.files)) == 1 and set(claude_api.files) < files_before
        assert (await store.load_conversation(ThreadKey("T3", "C3", root3))).history
        # Until it installs again, T2 is a workspace threadbox does not serve.
        requests = len(claude_api.requests)
        await send(bot, message_event("anyone?", channel="C2", user="U21", ts="1700000040.000300", thread_ts=root2),
                   t2, team="T2")
        await asyncio.sleep(0.3)
        await bot.idle()
        assert len(claude_api.requests) == requests
        # Installed again, it starts fresh: the old thread's history is gone.
        again = await install(bot.url, slack, "T2")
        claude_api.enqueue(Reply([text("fresh start")]))
        await send(bot, mention_event("hello again", channel="C2", user="U21", ts="1700000040.000400",
                                      thread_ts=root2, bot_user_id=again.bot_user_id), again, team="T2")
        await bot.wait_for(lambda: "fresh start" in thread_text(slack, "C2", root2))
        await bot.idle()
    assert len(claude_api.requests[-1]["messages"]) == 1 and container_of(claude_api.requests[-1]) is None
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.audit" and r.getMessage().startswith("uninstalled")]
    assert "T2" in line and "threads=1" in line and "files=1" in line


async def test_two_processes_on_postgresql_share_the_installs_and_refresh_a_token_once(
    postgres_url: str, slack: FakeSlack, claude_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude_api.base_url)
    slack.installs.add_workspace("T2")
    slack.installs.place_channel("C2", "T2")
    slack.users["U21"] = {"team_id": "T2"}
    settings = load_settings(oauth_env(slack, claude_api, postgres_url), dotenv=False)
    async with rotating(slack), running_bot(settings, slack) as first, running_bot(settings, slack) as second:
        t2 = await install(first.url, slack, "T2")
        slack.delay("oauth.v2.access", 0.3)  # a refresh under way while the other process asks
        await asyncio.sleep(3.5)  # into the refresh window: both processes' next requests refresh
        claude_api.enqueue(Reply([text("one")]), Reply([text("one")]))
        roots = ("1700000050.000100", "1700000051.000100")
        await asyncio.gather(*(
            send(bot, mention_event("go", channel="C2", user="U21", ts=root, bot_user_id=t2.bot_user_id), t2, team="T2")
            for bot, root in zip((first, second), roots)
        ))
        for root in roots:
            await first.wait_for(lambda r=root: "one" in thread_text(slack, "C2", r))
        await first.idle()
        await second.idle()
    assert len(refreshes(slack)) == 1  # a refresh token works once: the second process waited for the first's
    assert len(claude_api.requests) == 2


POLICY_FILE = """
[defaults]
allowed_users = ["U21", "U31"]

[workspaces.T3]
workspace_daily_budget = 50

[workspaces.T2]
admin_users = ["U29"]
"""


async def test_each_workspace_has_its_own_access_list_admins_and_daily_budget(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Any
) -> None:
    path = tmp_path / "threadbox.toml"
    path.write_text(POLICY_FILE, encoding="utf-8")
    slack.users.update({"U22": {"team_id": "T2"}, "U29": {"team_id": "T2"}, "U39": {"team_id": "T3"}})
    settings = replace(oauth_settings, settings_file=str(path))
    async with running_bot(settings, slack) as bot:
        t2, t3 = await install(bot.url, slack, "T2"), await install(bot.url, slack, "T3")
        for n in range(2):  # T2 has no workspace budget: both are answered
            await ask(bot, slack, claude_api, t2, channel="C2", user="U21", root=f"170000006{n}.000100", words=f"two {n}")
        await ask(bot, slack, claude_api, t3, channel="C3", user="U31", root="1700000070.000100", words="three")
        await bot.idle()
        requests = len(claude_api.requests)
        # T3's own daily budget (50 tokens) is spent; T2's people are not held back by it.
        await send(bot, mention_event("more", channel="C3", user="U31", ts="1700000071.000100",
                                      bot_user_id=t3.bot_user_id), t3, team="T3")
        # The [defaults] access list holds in every workspace; T2's admin is allowed past it.
        await send(bot, mention_event("me too", channel="C2", user="U22", ts="1700000072.000100",
                                      bot_user_id=t2.bot_user_id), t2, team="T2")
        await send(bot, mention_event("me too", channel="C3", user="U39", ts="1700000073.000100",
                                      bot_user_id=t3.bot_user_id), t3, team="T3")
        await bot.wait_for(lambda: "budget" in thread_text(slack, "C3", "1700000071.000100"))
        await bot.wait_for(lambda: len([e for e in slack.ephemerals if "isn't enabled for your account" in e.get("text", "")]) == 2)
        await ask(bot, slack, claude_api, t2, channel="C2", user="U29", root="1700000074.000100", words="admin in")
        await bot.idle()
        workspaces = bot.runtime.engine.workspaces
        t2_space, t3_space = await workspaces.resolve("T2"), await workspaces.resolve("T3")
    assert len(claude_api.requests) == requests + 1  # only T2's admin was answered
    assert "workspace's daily threadbox budget" in thread_text(slack, "C3", "1700000071.000100")
    refused = {e["user"] for e in slack.ephemerals if "isn't enabled for your account" in e.get("text", "")}
    assert refused == {"U22", "U39"}
    assert t2_space is not None and t3_space is not None
    assert t2_space.access.is_admin("U29") and not t3_space.access.is_admin("U29")


async def test_a_bad_policy_key_in_the_settings_file_is_one_line_naming_table_and_key(tmp_path: Any) -> None:
    from bot.channels.file import read_settings_file

    path = tmp_path / "bad.toml"
    path.write_text('[workspaces.T3]\nuser_daily_budget = "lots"\nallowed_users = ["alice"]\n', encoding="utf-8")

    async def no_problem(model: str) -> str | None:
        return None

    settings, problems = await read_settings_file(str(path), skills=(), check_model=no_problem)
    assert settings.rules == {} and len(problems) == 2
    assert all(f"{path}: [workspaces.T3] " in line for line in problems)
    assert any("user_daily_budget: " in line and "'lots'" in line for line in problems)
    assert any("allowed_users: takes Slack ids starting with U/W/S, got alice" in line for line in problems)


async def test_socket_mode_serves_the_install_pages_on_its_port_and_answers_each_install(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    socket_settings = replace(oauth_settings, slack_app_token=slack.app_token, slack_signing_secret="",
                              host="127.0.0.1", port=0)
    runtime = await create_runtime(socket_settings)
    handler = socket_mode_handler(runtime)
    operations = await serve_operations(runtime)
    try:
        host, port = operations.addresses[0][:2]
        t2 = await install(f"http://{host}:{port}", slack, "T2")
        await handler.connect_async()
        await wait_for(lambda: slack.socket_connected)
        claude_api.enqueue(Reply([text("over the socket")]))
        root = "1700000080.000100"
        body = event_body(mention_event("hi", channel="C2", user="U21", ts=root, bot_user_id=t2.bot_user_id),
                          team_id="T2", bot_user_id=t2.bot_user_id)
        await slack.push_socket("events_api", json.loads(body))
        await wait_for(lambda: "over the socket" in thread_text(slack, "C2", root))
        await runtime.engine.drain()
    finally:
        await handler.close_async()
        await operations.cleanup()
        await runtime.close()
    assert tokens_in(slack, "C2") == {t2.token}


async def test_the_fake_slack_refuses_what_slack_refuses_across_installs(slack: FakeSlack) -> None:
    """The fake's install flow is as strict as Slack's: the client's credentials, codes and
    refresh tokens that work once, tokens that expire, and a token good only in its workspace."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    slack.installs.add_workspace("T2")
    slack.installs.place_channel("C2", "T2")
    slack.installs.redirect_uri = "https://bot.example/slack/oauth_redirect"
    slack.installs.rotation = True
    app = AsyncWebClient(base_url=slack.base_url)

    def code_for(team: str) -> str:
        _, query = slack.installs.authorize({"client_id": CLIENT_ID, "scope": "chat:write", "state": "s", "team": team})
        return query["code"]

    async def refused(call: Any) -> str:
        with pytest.raises(SlackApiError) as error:
            await call
        return str(error.value.response["error"])

    _, bad_scope = slack.installs.authorize({"client_id": CLIENT_ID, "scope": "admin", "state": "s", "team": "T2"})
    assert bad_scope["error"] == "invalid_scope"
    code = code_for("T2")
    assert await refused(app.oauth_v2_access(client_id=CLIENT_ID, client_secret="nope", code=code)) == "bad_client_secret"
    granted = await app.oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code)
    assert granted["team"]["id"] == "T2" and granted["expires_in"] > 0 and granted["refresh_token"]
    assert await refused(app.oauth_v2_access(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code)) == "invalid_code"
    refresh = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token",
               "refresh_token": granted["refresh_token"]}
    renewed = await app.oauth_v2_access(**refresh)
    assert renewed["access_token"] != granted["access_token"]
    assert await refused(app.oauth_v2_access(**refresh)) == "invalid_refresh_token"  # it worked once
    bot = AsyncWebClient(token=renewed["access_token"], base_url=slack.base_url)
    assert (await bot.auth_test())["team_id"] == "T2"
    assert await refused(bot.chat_postMessage(channel="C1", text="x")) == "channel_not_found"  # T1's channel
    assert (await bot.chat_postMessage(channel="C2", text="x"))["ok"]
    slack.installs.expire("T2")
    assert await refused(bot.auth_test()) == "token_expired"


def test_the_authorize_cache_keeps_the_newest_tokens_only() -> None:
    from bot.installs.oauth import RecentFirst

    cache = RecentFirst(2)
    for token in ("xoxe.xoxb-1", "xoxe.xoxb-2", "xoxe.xoxb-3"):
        cache[token] = {}  # type: ignore[assignment]
    assert list(cache) == ["xoxe.xoxb-2", "xoxe.xoxb-3"]


async def test_a_forged_replayed_or_refused_install_stores_nothing(
    oauth_settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(oauth_settings, slack) as bot, aiohttp.ClientSession() as browser:
        slack.installs.redirect_uri = f"{bot.url}/slack/oauth_redirect"
        state, link = await start_install(browser, bot.url)
        async with browser.get(link + "&team=T2", allow_redirects=False) as approved:
            back = approved.headers["Location"]
        cookie = {"Cookie": f"{STATE_COOKIE}={state}"}
        outcomes = []
        for url, headers in (
            (back, {}),  # no state cookie: not the browser that started the install
            (back.replace(f"state={state}", "state=forged"), {"Cookie": f"{STATE_COOKIE}=forged"}),  # never issued
            (f"{bot.url}/slack/oauth_redirect?error=access_denied&state={state}", cookie),  # the person said no
        ):
            async with browser.get(url, headers=headers, allow_redirects=False) as answer:
                outcomes.append((answer.status, await answer.text()))
        nothing_yet = await bot.runtime.store.find_installation("T2")
        async with browser.get(back, headers=cookie, allow_redirects=False) as done:
            installed = done.status
        async with browser.get(back, headers=cookie, allow_redirects=False) as again:
            replayed = again.status  # the state was used up
        store = bot.runtime.store
        kept = await store.find_installation("T2")
    (no_cookie, _), (forged, _), (denied, page) = outcomes
    assert no_cookie == 400 and forged == 401 and denied == 200 and "went wrong" in page.lower()
    assert nothing_yet is None and installed == 200 and replayed == 401
    assert kept is not None  # only the real one, once
    assert len([c for c in slack.calls_to("oauth.v2.access") if c.get("code")]) == 1
