"""The manifest matches the code; configuration fails clearly; storage migrates."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest
import yaml

from bot import listeners
from bot.config import load_settings
from bot.errors import ConfigError
from storage import InboxMessage, ThreadKey, TurnLimits, open_store
from storage.connector import migrations
from storage.sqlite import sqlite_path
from tests.conftest import SIGNING_SECRET, BotServer, said_by, thread_text, wait_for
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.slack_api import event_body, home_opened_event, mention_event, message_event, sign
from tests.processes import ROOT, bot_process, bot_process_env, free_port

MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())
# Slack's event subscriptions that deliver a `message` event, by the conversation they cover.
MESSAGE_SUBSCRIPTIONS = {"message.channels", "message.groups", "message.im", "message.mpim"}


def test_manifest_declares_exactly_what_the_code_handles() -> None:
    declared_events = set(MANIFEST["settings"]["event_subscriptions"]["bot_events"])
    handled_events = set(listeners.HANDLED_EVENTS)
    assert {e for e in declared_events if e not in MESSAGE_SUBSCRIPTIONS} | (
        {"message"} if declared_events & MESSAGE_SUBSCRIPTIONS else set()
    ) == handled_events
    assert MESSAGE_SUBSCRIPTIONS <= declared_events  # channels, private channels, DMs, group DMs
    # Installs made before `agent_view` still send the assistant view's events; new ones cannot ask for them.
    assert not declared_events & set(listeners.LEGACY_EVENTS)
    assert "agent_view" in MANIFEST["features"] and "assistant_view" not in MANIFEST["features"]

    commands = {c["command"] for c in MANIFEST["features"]["slash_commands"]}
    assert commands == set(listeners.HANDLED_COMMANDS)
    shortcuts = {s["callback_id"] for s in MANIFEST["features"]["shortcuts"]}
    assert shortcuts == set(listeners.HANDLED_SHORTCUTS)
    assert all(s["type"] == "message" for s in MANIFEST["features"]["shortcuts"])
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    scopes = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "files:read", "files:write", "im:history",
            "channels:history", "users:read"} <= scopes


async def test_every_declared_surface_reaches_a_listener(bot: BotServer, caplog: pytest.LogCaptureFixture) -> None:
    """Bolt answers 404 to a request no listener matches; each declared surface must get 200
    and be handled without an error (Bolt acknowledges first, so a listener that raises only
    shows in the log)."""
    caplog.set_level(logging.ERROR)
    for event_type in MANIFEST["settings"]["event_subscriptions"]["bot_events"]:
        if event_type == "app_mention":
            event = mention_event("x", channel="C7", user="U1", ts="1700000301.000100")
        elif event_type == "app_home_opened":
            event = home_opened_event("U1")
        elif event_type == "app_context_changed":
            event = {"type": event_type, "user": "U1", "context": {"entities": [
                {"type": "slack#/types/channel_id", "value": "C7"}]}}
        elif event_type in ("message_stream_stopped", "agent_session_stopped"):
            event = {"type": event_type, "user": "U1", "channel": "C7", "ts": "1700000301.000600",
                     "thread_ts": "1700000301.000400"}
        else:
            channel_type = {"message.channels": "channel", "message.groups": "group", "message.im": "im",
                            "message.mpim": "mpim"}.get(event_type, "channel")
            event = message_event("x", channel="C7", user="U1", ts="1700000301.000200", channel_type=channel_type,
                                  thread_ts="1700000301.000999")
            event["type"] = event_type.split(".")[0]
        assert await bot.send_event(event) == 200, event_type
    for command in MANIFEST["features"]["slash_commands"]:
        status = await bot.send_command("", command=command["command"], channel_id="C7", user_id="U1")
        assert status == 200, command
    for shortcut in MANIFEST["features"]["shortcuts"]:
        message = {"ts": "1700000301.000300", "text": "x"}
        status = await bot.send_shortcut(message, callback_id=shortcut["callback_id"], channel_id="C7", user_id="U1")
        assert status == 200, shortcut
    # And a surface the manifest does not declare reaches no listener.
    assert await bot.send_command("", command="/undeclared", channel_id="C7", user_id="U1") == 404
    await bot.idle()
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert bot.slack.home_views["U1"]["type"] == "home"


def test_missing_settings_stop_startup_with_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "SLACK_BOT_TOKEN" in lines[0] and "ANTHROPIC_API_KEY" in lines[0] and "SLACK_SIGNING_SECRET" in lines[0]


def test_settings_defaults_and_socket_mode() -> None:
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "ANTHROPIC_API_KEY": "k"})
    assert settings.socket_mode and settings.port == 3000
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.code_execution_tool == "code_execution_20260521"
    assert settings.database_url == "sqlite:///threadbox.db"
    gov = load_settings({"SLACK_BOT_TOKEN": "x", "SLACK_SIGNING_SECRET": "s", "ANTHROPIC_API_KEY": "k",
                         "SLACK_API_URL": "https://slack-gov.com/api"})
    assert gov.slack_api_url == "https://slack-gov.com/api/" and not gov.socket_mode
    with pytest.raises(ConfigError, match="PORT"):
        load_settings({"SLACK_BOT_TOKEN": "x", "SLACK_SIGNING_SECRET": "s", "ANTHROPIC_API_KEY": "k", "PORT": "web"})
    with pytest.raises(ConfigError, match="xapp-"):
        load_settings({"SLACK_BOT_TOKEN": "x", "SLACK_APP_TOKEN": "xoxb-wrong", "ANTHROPIC_API_KEY": "k"})


def test_database_urls() -> None:
    assert sqlite_path("sqlite:///threadbox.db") == "threadbox.db"
    assert sqlite_path("sqlite:////var/lib/threadbox.db") == "/var/lib/threadbox.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"
    with pytest.raises(ValueError):
        sqlite_path("sqlite://relative.db")


async def test_storage_is_wal_versioned_and_reopens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'db.sqlite'}"
    store = await open_store(url)
    thread = ThreadKey("T1", "C1", "1.1")
    assert await store.schema_version() == len(migrations("sqlite"))
    async with store.db.execute("PRAGMA journal_mode") as cursor:
        assert (await cursor.fetchone())[0] == "wal"
    queued = await store.enqueue_message(InboxMessage(thread, "1.1", "U1", "hi"), addressed=True)
    assert queued is not None
    await store.save_turn(queued.id, thread, [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "cont_1", 123.0, [], [])
    await store.close()

    reopened = await open_store(url)
    conversation = await reopened.load_conversation(thread)
    assert conversation.container_id == "cont_1" and conversation.container_expires_at == 123.0
    assert conversation.history[0]["content"][0]["text"] == "hi"
    assert (await reopened.claim_thread("p", 10)) is not None  # its delivery is still owed
    await reopened.close()

    with pytest.raises(ValueError, match="mysql"):
        await open_store("mysql://db/threadbox")


async def test_a_database_of_the_first_schema_is_upgraded_with_its_inbox(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    [(_, first_schema), *_] = migrations("sqlite")
    with sqlite3.connect(path) as old:
        old.executescript(first_schema + "PRAGMA user_version = 1;")
        old.executemany(
            "INSERT INTO inbox (team_id, channel_id, message_ts, thread_ts, user_id, text, files, done, received_at)"
            " VALUES ('T1', 'C1', ?, '5.0', 'U1', ?, '[]', ?, 1.0)",
            [("5.0", "answered", 1), ("5.1", "waiting", 0)],
        )
        old.execute("INSERT INTO conversations VALUES ('T1', 'C1', '5.0', NULL, NULL, 1.0, 1.0)")
    store = await open_store(f"sqlite:///{path}")
    try:
        thread = ThreadKey("T1", "C1", "5.0")
        assert await store.enqueue_message(InboxMessage(thread, "5.0", "U1", "answered"), addressed=True) is None
        claim = await store.claim_thread("p", 10)
        assert claim is not None and claim.thread == thread
        item = await store.next_item(thread, claim.lease, 10)
        assert item is not None and item.text == "waiting"
        [summary] = await store.active_threads("T1", "C1", "U1")
        assert summary.last_text == "waiting"
    finally:
        await store.close()


async def test_python_m_bot_serves_http_and_stops_cleanly(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = bot_process_env(tmp_path, slack, claude_api, PORT=str(port), SLACK_SIGNING_SECRET=SIGNING_SECRET)
    url = f"http://127.0.0.1:{port}"
    async with bot_process(env, tmp_path), aiohttp.ClientSession() as session:

        async def healthy() -> bool:
            try:
                async with session.get(f"{url}/healthz") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        for _ in range(300):
            if await healthy():
                break
            await asyncio.sleep(0.05)
        body = event_body(mention_event("from the real process", channel="C1", user="U1", ts="1700000701.000100"))
        async with session.post(f"{url}/slack/events", data=body, headers=sign(SIGNING_SECRET, body)) as response:
            assert response.status == 200
        await wait_for(lambda: "ok" in thread_text(slack, "C1", "1700000701.000100"))
    assert claude_api.requests[0]["messages"][0]["content"][0]["text"] == said_by("U1", "from the real process")


async def test_python_m_bot_in_socket_mode_answers_and_stops_cleanly(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    port = free_port()
    env = bot_process_env(tmp_path, slack, claude_api, SLACK_APP_TOKEN=slack.app_token, PORT=str(port))
    async with bot_process(env, tmp_path):
        await wait_for(lambda: slack.socket_connected, timeout=30)
        event = json.loads(event_body(mention_event("over a socket", channel="C1", user="U1", ts="1700000702.000100")))
        await slack.push_socket("events_api", event)
        await wait_for(lambda: "ok" in thread_text(slack, "C1", "1700000702.000100"))
        # Socket Mode still serves the health check and the metrics on $PORT.
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert 'threadbox_turns_total{outcome="answered"} 1.0' in await response.text()
    assert claude_api.requests[0]["messages"][0]["content"][0]["text"] == said_by("U1", "over a socket")

BASE_ENV = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ANTHROPIC_API_KEY": "k"}


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
        ("PORT", "0", "PORT must be greater than zero"),
        ("PORT", "-80", "PORT must be greater than zero"),
        ("PORT", "70000", "PORT must be at most 65535"),
        ("MAX_FILE_MB", "0", "MAX_FILE_MB must be greater than zero"),
        ("MAX_MESSAGE_CHARS", "-1", "MAX_MESSAGE_CHARS must be greater than zero"),
        ("ANTHROPIC_MAX_TOKENS", "0", "ANTHROPIC_MAX_TOKENS must be greater than zero"),
        ("TURN_TIMEOUT_MINUTES", "0", "TURN_TIMEOUT_MINUTES must be greater than zero"),
        ("FILE_TIMEOUT_SECONDS", "-5", "FILE_TIMEOUT_SECONDS must be greater than zero"),
        ("MAX_OUTPUT_FILES", "0", "MAX_OUTPUT_FILES must be greater than zero"),
        ("MAX_TURNS_PER_PERSON", "0", "MAX_TURNS_PER_PERSON must be greater than zero"),
        ("MAX_TURNS_OVERALL", "many", "MAX_TURNS_OVERALL must be a whole number"),
        ("SLACK_API_URL", "http://slack.example.com/api/", "SLACK_API_URL must be an https:// URL"),
    ],
)
def test_settings_a_newcomer_gets_wrong_stop_startup(name: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_settings({**BASE_ENV, name: value})


def test_new_settings_defaults_and_a_loopback_slack_api_url() -> None:
    settings = load_settings(BASE_ENV)
    assert settings.turn_timeout_seconds == 15 * 60 and settings.file_timeout_seconds == 60
    assert settings.max_output_files == 10 and settings.log_level == "INFO"
    for url in ("http://127.0.0.1:8080/api/", "http://localhost/api", "http://[::1]:9/api/"):
        assert load_settings({**BASE_ENV, "SLACK_API_URL": url}).slack_api_url.startswith("http://")
    assert load_settings({**BASE_ENV, "LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert settings.turn_limits == TurnLimits(per_person=3, overall=None)
    assert load_settings({**BASE_ENV, "MAX_TURNS_PER_PERSON": "none", "MAX_TURNS_OVERALL": "40"}).turn_limits == TurnLimits(
        per_person=None, overall=40
    )


def test_a_copied_env_example_names_its_placeholders_in_one_line(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ANTHROPIC_"))}
    # Should the placeholders be used anyway, they would only reach the fakes.
    env.update(PYTHONPATH=str(ROOT), SLACK_API_URL=slack.base_url, ANTHROPIC_BASE_URL=claude_api.base_url,
               DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "SLACK_BOT_TOKEN" in line and "ANTHROPIC_API_KEY" in line and "SLACK_SIGNING_SECRET" in line
    assert "placeholder" in line and "SLACK_APP_TOKEN" in line
    assert "HTTP mode, as SLACK_APP_TOKEN is still the placeholder" in line
    assert slack.calls == [] and claude_api.requests == []


def test_python_m_bot_help_prints_usage_and_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m bot")
    readme = (ROOT / "README.md").read_text()
    documented = re.findall(r"^\| `([A-Z_]+)` \|", readme, flags=re.MULTILINE)
    assert len(documented) >= 19
    for name in documented:
        assert name in result.stdout, name
    for line in (ROOT / ".env.example").read_text().splitlines():
        if re.match(r"#? ?[A-Z_]+=", line):
            assert line.lstrip("# ").split("=")[0] in documented, line


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-wrong"}, "Slack refused SLACK_BOT_TOKEN (auth.test answered invalid_auth)"),
        ({"SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_APP_TOKEN": "xapp-1-socket"}, "Slack refused SLACK_BOT_TOKEN"),
        ({"SLACK_API_URL": "http://127.0.0.1:1/api/"}, "could not reach Slack at http://127.0.0.1:1/api/"),
        ({"ANTHROPIC_API_KEY": "sk-ant-wrong"}, "the Anthropic API refused ANTHROPIC_API_KEY"),
    ],
)
async def test_a_start_that_fails_exits_with_one_line_and_never_hangs(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic, change: dict[str, str], complaint: str
) -> None:
    env = bot_process_env(tmp_path, slack, claude_api, SLACK_SIGNING_SECRET=SIGNING_SECRET, **change)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)  # the store it opened is closed again
    said = stderr.decode()
    assert process.returncode == 2 and "Traceback" not in said
    assert said.strip().splitlines()[-1].startswith(f"threadbox: {complaint}")


def test_the_built_package_holds_every_module_the_queries_and_the_manifest(tmp_path: Path) -> None:
    """`pip install .` (the README's command, and the Dockerfile's) installs what `python -m bot`
    imports and reads, wherever it is started."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w",
         str(tmp_path)], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = tmp_path.glob("threadbox-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(ROOT)) for folder in ("bot", "storage") for p in (ROOT / folder).rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert {"storage/queries/common.sql", "storage/migrations/postgres/0001_initial.sql"} <= names
    assert any(name.endswith(".data/data/share/threadbox/manifest.yml") for name in names)
