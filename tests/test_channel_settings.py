"""Per-channel settings, through the real bot: the settings file (read at start-up, on SIGHUP and
when it changes), the `/threadbox settings` modal (signed slash commands and `view_submission`
payloads), who may change what, and what each turn's request carries."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_runtime
from bot.config import Settings
from bot.errors import StartupError
from tests.conftest import BotServer, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, text
from tests.fakes.slack_api import (
    home_action_body,
    home_opened_event,
    mention_event,
    message_event,
    view_submission_body,
)
from tests.processes import bot_process_env

FRENCH = "Answer in French. Keep answers short."


def system_text(request: dict[str, Any]) -> str:
    return "\n".join(block["text"] for block in request["system"])


def tool_names(request: dict[str, Any]) -> set[str]:
    return {str(tool.get("name")) for tool in request["tools"]}


def write(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


async def ask(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, channel: str, root: str,
              answer: str = "done", user: str = "U1") -> dict[str, Any]:
    """A mention in `channel` answered with `answer`; the request the model was sent."""
    claude_api.enqueue(Reply([text(answer)]))
    sent = len(claude_api.requests)
    await bot.send_event(mention_event("please help", channel=channel, user=user, ts=root))
    await bot.wait_for(lambda: answer in thread_text(slack, channel, root))
    await bot.idle()
    return claude_api.requests[sent]


async def open_modal(bot: BotServer, slack: FakeSlack, user: str, channel: str = "C1") -> tuple[dict[str, Any], list[Any]]:
    """`/threadbox settings` in `channel`: the modal it opened (or {}) and what the command answered."""
    opened = len(slack.modals)
    response_url = slack.new_response_url()
    assert await bot.send_command("settings", command="/threadbox", channel_id=channel, user_id=user,
                                  response_url=response_url) == 200
    await bot.idle(0.1)
    return (slack.modals[-1] if len(slack.modals) > opened else {}), slack.responses[response_url]


async def submit(bot: BotServer, view: dict[str, Any], answers: dict[str, Any], user: str) -> tuple[int, str]:
    return await bot.post(view_submission_body(view, answers, user_id=user), "application/x-www-form-urlencoded")


def admin_with_file(settings: Settings, tmp_path: Path, body: str) -> Settings:
    """UADMIN an admin, and a settings file holding `body`."""
    file = write(tmp_path / "threadbox.toml", body)
    return replace(settings, admin_users=frozenset({"UADMIN"}), settings_file=str(file))


def inputs(view: dict[str, Any]) -> set[str]:
    return {block["block_id"] for block in view["blocks"] if block["type"] == "input"}


# --- the settings file ----------------------------------------------------------------------

async def test_a_channels_file_settings_reach_its_requests_and_no_other_channels(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    file = write(tmp_path / "threadbox.toml", f"""
[defaults]
web_fetch = false

[channels.C1]
instructions = "{FRENCH}"
model = "claude-opus-5-5"
effort = "high"
web_search = true
skills = ["xlsx"]

[dms]
instructions = "In DMs, sign every answer with a wave."
""")
    async with running_bot(replace(settings, settings_file=str(file)), slack) as bot:
        c1 = await ask(bot, slack, claude_api, "C1", "1700007001.000100")
        c2 = await ask(bot, slack, claude_api, "C2", "1700007002.000100")
        claude_api.enqueue(Reply([text("wave")]))
        await bot.send_event(message_event("hello", channel="D0DM1", user="U1", ts="1700007003.000100",
                                           channel_type="im"))
        await bot.wait_for(lambda: len(claude_api.requests) == 3)
        await bot.idle()
        dm = claude_api.requests[2]
    assert c1["model"] == "claude-opus-5-5" and c1["output_config"] == {"effort": "high"}
    assert FRENCH in system_text(c1) and "web_search" in tool_names(c1) and "web_fetch" not in tool_names(c1)
    assert c1["container"]["skills"] == [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]
    # The built-in rules stay first: the instructions are added after them.
    assert system_text(c1).index("You are threadbox") < system_text(c1).index(FRENCH)
    assert c2["model"] == settings.anthropic_model and "output_config" not in c2
    assert FRENCH not in system_text(c2) and tool_names(c2) == {"code_execution"}  # [defaults]: no web fetch
    assert len(c2["container"]["skills"]) == 4
    assert "sign every answer with a wave" in system_text(dm) and FRENCH not in system_text(dm)


async def test_the_files_bad_values_stop_start_up_one_line_each_naming_file_table_and_key(
    settings: Settings, tmp_path: Path
) -> None:
    file = write(tmp_path / "bad.toml", """
[channels.C1]
modle = "claude-opus-5-5"
effort = "extreme"

[channels.C2]
model = "claude-opus-9"
daily_budget = "lots"

[channels.general]
web_search = true

[workspaces.T1]
web_search = "yes"

[colours]
x = 1
""")
    with pytest.raises(StartupError) as raised:
        await create_runtime(replace(settings, settings_file=str(file)))
    lines = str(raised.value).splitlines()[1:]
    assert sorted(lines) == sorted([
        f"{file}: [colours] unknown table (known: defaults, workspaces, channels, dms)",
        f"{file}: [channels.C1] modle: unknown key (known: instructions, model, effort, skills, web_fetch,"
        " web_search, follow_ups, daily_budget)",
        f"{file}: [channels.C1] effort: must be one of low, medium, high, max, got 'extreme'",
        f"{file}: [channels.C2] model: 'claude-opus-9' is not a model this API key can use",
        f"{file}: [channels.C2] daily_budget: must be tokens (500000) or dollars (\"$5\"), got 'lots'",
        f"{file}: [channels.general] is not a channel id (C… or G…)",
        f"{file}: [workspaces.T1] web_search: must be true or false, got 'yes'",
    ])


async def test_python_m_bot_check_names_the_files_problems_and_fails(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    file = write(tmp_path / "bad.toml", '[channels.C1]\nmodel = "claude-opus-9"\n\n[dms]\nfollow_ups = "never"\n')
    env = bot_process_env(tmp_path, slack, claude_api, SLACK_SIGNING_SECRET="x", SETTINGS_FILE=str(file))
    checking = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "check", env=env, cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(checking.communicate(), 60)
    lines = output.decode().splitlines()
    assert checking.returncode == 1
    assert any(line.startswith("✗ settings file: 2 problem(s)") for line in lines)
    assert f"  {file}: [channels.C1] model: 'claude-opus-9' is not a model this API key can use" in lines
    assert f"  {file}: [dms] follow_ups: must be one of all, mention, got 'never'" in lines


async def test_sighup_and_a_changed_file_apply_without_a_restart_and_a_bad_edit_keeps_the_last_good(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = write(tmp_path / "threadbox.toml", '[channels.C1]\nmodel = "claude-opus-5-5"\n')
    root = "1700007010.000100"
    async with running_bot(replace(settings, settings_file=str(file)), slack) as bot:
        assert (await ask(bot, slack, claude_api, "C1", root, "one"))["model"] == "claude-opus-5-5"
        write(file, '[channels.C1]\nmodel = "claude-haiku-5-5"\n')
        os.kill(os.getpid(), signal.SIGHUP)
        book = bot.runtime.channels
        await bot.wait_for(lambda: book.file is not None and book.file.current.channels["C1"].model == "claude-haiku-5-5")
        claude_api.enqueue(Reply([text("two")]))
        await bot.send_event(message_event("again", channel="C1", user="U1", ts="1700007010.000200", thread_ts=root))
        await bot.wait_for(lambda: "two" in thread_text(slack, "C1", root))
        await bot.idle()
        assert claude_api.requests[-1]["model"] == "claude-haiku-5-5"
        # The thread keeps its container across the change: the one its first answer made.
        assert list(claude_api.containers) == [claude_api.requests[-1]["container"]["id"]]
        # Told once, in the thread: the answer after the change says so, the next one does not.
        assert thread_text(slack, "C1", root).count("Settings for this channel changed: model now claude-haiku-5-5") == 1
        # An edit with a bad value is logged and changes nothing; a good one is read by itself.
        with caplog.at_level(logging.ERROR):
            write(file, '[channels.C1]\nmodel = "claude-haiku-5-5"\neffort = "loud"\n')
            await bot.wait_for(lambda: any("effort" in r.getMessage() for r in caplog.records), timeout=10)
        assert book.file is not None and book.file.current.channels["C1"].effort is None
        write(file, '[channels.C1]\nmodel = "claude-haiku-5-5"\neffort = "low"\n')
        await bot.wait_for(lambda: book.file is not None and book.file.current.channels["C1"].effort == "low", timeout=10)
        claude_api.enqueue(Reply([text("three")]))
        await bot.send_event(message_event("more", channel="C1", user="U1", ts="1700007010.000300", thread_ts=root))
        await bot.wait_for(lambda: "three" in thread_text(slack, "C1", root))
        await bot.idle()
    assert claude_api.requests[-1]["output_config"] == {"effort": "low"}
    assert thread_text(slack, "C1", root).count("Settings for this channel changed") == 1  # effort is not told


# --- the modal ------------------------------------------------------------------------------

async def test_an_admin_sets_a_channels_values_in_the_modal_on_either_database(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    settings = replace(settings_on_each_store, admin_users=frozenset({"UADMIN"}))
    async with running_bot(settings, slack) as bot:
        view, said = await open_modal(bot, slack, "UADMIN")
        assert said == [] and view["submit"]["text"] == "Save"
        assert inputs(view) == {"instructions", "model", "effort", "skills", "web_fetch", "web_search", "follow_ups",
                                "daily_budget"}
        assert "Changing the model or the instructions starts a new prompt cache" in json.dumps(view)
        with caplog.at_level(logging.INFO, logger="bot.audit"):
            status, body = await submit(bot, view, {
                "instructions": FRENCH, "model": "claude-opus-5-5", "web_search": "on", "skills": ["pdf", "xlsx"],
            }, "UADMIN")
        assert status == 200 and body == ""
        c1 = await ask(bot, slack, claude_api, "C1", "1700007020.000100")
        c2 = await ask(bot, slack, claude_api, "C2", "1700007021.000100")
        again, _ = await open_modal(bot, slack, "UADMIN")
    assert c1["model"] == "claude-opus-5-5" and FRENCH in system_text(c1) and "web_search" in tool_names(c1)
    assert [s["skill_id"] for s in c1["container"]["skills"]] == ["pdf", "xlsx"]
    assert c2["model"] == settings.anthropic_model and FRENCH not in system_text(c2)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("channel_settings")]
    assert "user=UADMIN" in line and "channel=C1" in line and 'before={}' in line and "claude-opus-5-5" in line
    assert "Last changed in Slack by <@UADMIN>" in json.dumps(again)
    model_input = next(b for b in again["blocks"] if b.get("block_id") == "model")
    assert model_input["element"]["initial_option"]["value"] == "claude-opus-5-5"


async def test_the_modal_refuses_bad_values_by_name_and_keeps_what_the_file_locks(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    async with running_bot(admin_with_file(settings, tmp_path, '[channels.C1]\nweb_search = false\n'), slack) as bot:
        view, _ = await open_modal(bot, slack, "UADMIN")
        assert "web_search" not in inputs(view) and "locked: set in the settings file" in json.dumps(view)
        status, body = await submit(bot, view, {"daily_budget": "a lot"}, "UADMIN")
        assert status == 200
        answer = json.loads(body)
        assert answer["response_action"] == "errors" and "daily_budget" in answer["errors"]
        assert await bot.runtime.store.channel_settings("T1", "C1") is None  # nothing was kept
        # A forged answer for the locked key is ignored: the file wins.
        forged = json.loads(json.dumps(view))
        forged["blocks"].append({"type": "input", "block_id": "web_search", "label": {"type": "plain_text", "text": "x"},
                                 "element": {"type": "static_select", "action_id": "web_search",
                                             "options": [{"text": {"type": "plain_text", "text": "on"}, "value": "on"}]}})
        status, body = await submit(bot, forged, {"web_search": "on", "effort": "low"}, "UADMIN")
        assert status == 200 and body == ""
        request = await ask(bot, slack, claude_api, "C1", "1700007030.000100")
    assert request["output_config"] == {"effort": "low"} and "web_search" not in tool_names(request)


async def test_people_who_may_not_change_settings_see_them_read_only_and_nothing_of_other_channels(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    settings = replace(settings, admin_users=frozenset({"UADMIN"}))
    slack.members["C5"] = ["UBOT", "U7"]
    async with running_bot(settings, slack) as bot:
        view, said = await open_modal(bot, slack, "U2")  # a member of C1, not an admin
        assert said == [] and "submit" not in view and inputs(view) == set()
        admin_view, _ = await open_modal(bot, slack, "UADMIN")
        status, body = await submit(bot, admin_view, {"model": "claude-opus-5-5"}, "U2")  # forged by U2
        assert status == 200 and json.loads(body)["response_action"] == "update"
        assert await bot.runtime.store.channel_settings("T1", "C1") is None
        nothing, said = await open_modal(bot, slack, "U2", channel="C5")  # not a member there
        assert nothing == {} and said[0]["text"] == "You can only see the settings of channels you are in."
        slack.users["U8"] = {"is_admin": True}  # the workspace's own Slack admins may change any channel
        slack.members["C5"].append("U8")
        editable, _ = await open_modal(bot, slack, "U8", channel="C5")
        assert editable["submit"]["text"] == "Save"
        # In a DM the DMs' shared entry is shown, read-only to everyone but admins.
        dm, _ = await open_modal(bot, slack, "U2", channel="D0DM2")
        assert dm["title"]["text"] == "DM settings" and "submit" not in dm


async def test_with_channel_settings_by_members_a_member_changes_their_channel_but_not_the_dms(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, channel_settings_by="members"), slack) as bot:
        view, _ = await open_modal(bot, slack, "U2")
        assert view["submit"]["text"] == "Save"
        status, body = await submit(bot, view, {"follow_ups": "mention"}, "U2")
        assert status == 200 and body == ""
        dm, _ = await open_modal(bot, slack, "U2", channel="D0DM2")
        assert "submit" not in dm
        stored = await bot.runtime.store.channel_settings("T1", "C1")
    assert stored is not None and stored.values == {"follow_ups": "mention"} and stored.changed_by == "U2"


async def test_a_channels_own_budget_stops_a_person_there_and_nowhere_else(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    file = write(tmp_path / "threadbox.toml", '[channels.C1]\ndaily_budget = 100\n')
    async with running_bot(replace(settings, settings_file=str(file)), slack) as bot:
        await ask(bot, slack, claude_api, "C1", "1700007040.000100", "first")
        await bot.send_event(mention_event("more please", channel="C1", user="U1", ts="1700007041.000100"))
        await bot.wait_for(lambda: "budget" in thread_text(slack, "C1", "1700007041.000100"))
        await bot.idle()
        other = await ask(bot, slack, claude_api, "C2", "1700007042.000100", "elsewhere")
    assert "Your daily threadbox budget in this channel (100 tokens) is used up" in thread_text(
        slack, "C1", "1700007041.000100"
    )
    assert len(claude_api.requests) == 2 and other["model"] == settings.anthropic_model


async def test_threadbox_help_lists_the_commands(bot: BotServer, slack: FakeSlack) -> None:
    for text_ in ("help", "", "frobnicate"):
        response_url = slack.new_response_url()
        await bot.send_command(text_, command="/threadbox", channel_id="C1", user_id="U1", response_url=response_url)
        await bot.idle(0.1)
        said = slack.responses[response_url][0]["text"]
        assert all(word in said for word in ("!stop", "!reset", "!usage", "!files", "!export", "!fork",
                                             "/threadbox settings", "/reset"))
    assert "I don't know `/threadbox frobnicate`" in said


async def test_admins_see_each_channels_settings_on_the_home_tab_with_an_edit_button(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    async with running_bot(admin_with_file(settings, tmp_path, '[channels.C3]\nmodel = "claude-opus-5-5"\n'), slack) as bot:
        view, _ = await open_modal(bot, slack, "UADMIN")
        await submit(bot, view, {"effort": "max"}, "UADMIN")
        for user in ("UADMIN", "U2"):
            await bot.send_event(home_opened_event(user))
        await bot.wait_for(lambda: {"UADMIN", "U2"} <= set(slack.home_views))
        home = json.dumps(slack.home_views["UADMIN"])
        opened = len(slack.modals)
        await bot.post(home_action_body("edit_channel_settings", "C3", user_id="UADMIN"),
                       "application/x-www-form-urlencoded")
        await bot.wait_for(lambda: len(slack.modals) > opened)
    assert "Channel settings" in home and "<#C1>" in home and "effort max" in home and "<@UADMIN>" in home
    assert "<#C3>" in home and "settings file: model claude-opus-5-5" in home
    assert "Channel settings" not in json.dumps(slack.home_views["U2"])
    assert "Settings for <#C3>" in json.dumps(slack.modals[-1])
