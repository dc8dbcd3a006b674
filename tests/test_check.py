"""`python -m bot check` against the fakes: every check green, and each failure named with its fix."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from bot.check import BOT_SCOPES, CheckResult, run_checks
from bot.config import Settings
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.slack_installs import CLIENT_ID, CLIENT_SECRET

ROOT = Path(__file__).resolve().parent.parent


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


def test_the_checked_scopes_are_the_manifest_scopes() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert sorted(BOT_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"])


async def test_everything_green(settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    results = by_name(await run_checks(settings))
    assert all(result.ok for result in results.values()), [r.line() for r in results.values()]
    assert set(results) == {"slack bot token", "slack scopes", "anthropic model", "code execution tool",
                            "skills", "anthropic files API", "database"}
    assert results["skills"].detail == "xlsx (Anthropic's), pptx (Anthropic's), docx (Anthropic's), pdf (Anthropic's)"
    assert "Fake Workspace" in results["slack bot token"].detail
    assert "current" in results["database"].detail
    # A token count proves the key, model and tool; no paid turn was run.
    assert claude_api.requests == []
    tools = claude_api.count_token_requests[0]["tools"]  # the tools exactly as a turn sends them
    assert tools[0] == {"type": settings.code_execution_tool, "name": "code_execution"}
    assert [t["name"] for t in tools[1:]] == ["web_fetch"]


async def test_installing_by_oauth_checks_the_apps_credentials(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    oauth = replace(settings, slack_bot_token="", slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET)
    results = by_name(await run_checks(oauth))
    assert "slack bot token" not in results and results["slack app credentials"].ok
    assert "people install at /slack/install" in results["slack app credentials"].detail
    bad = by_name(await run_checks(replace(oauth, slack_client_secret="wrong")))
    line = bad["slack app credentials"].line()
    assert not bad["slack app credentials"].ok and "bad_client_secret" in line and "SLACK_CLIENT_SECRET" in line


async def test_socket_mode_opens_a_connection(settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    socket_settings = replace(settings, slack_app_token=slack.app_token)
    results = by_name(await run_checks(socket_settings))
    assert results["slack app token"].ok
    assert any(call.method == "apps.connections.open" for call in slack.calls)

    bad = by_name(await run_checks(replace(settings, slack_app_token="xapp-wrong")))
    assert not bad["slack app token"].ok and "invalid_auth" in bad["slack app token"].line()


async def test_a_missing_scope_is_named_with_reinstall_as_the_fix(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.scopes.remove("reactions:write")
    results = by_name(await run_checks(settings))
    line = results["slack scopes"].line()
    assert not results["slack scopes"].ok
    assert "missing reactions:write" in line and "reinstall the app" in line
    assert results["slack bot token"].ok


async def test_a_bad_anthropic_key(settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    results = by_name(await run_checks(replace(settings, anthropic_api_key="sk-ant-wrong")))
    assert not results["anthropic key"].ok
    assert "ANTHROPIC_API_KEY" in results["anthropic key"].line()
    assert results["database"].ok and results["slack scopes"].ok


async def test_an_unknown_model(settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    results = by_name(await run_checks(replace(settings, anthropic_model="claude-nonexistent-1")))
    assert not results["anthropic model"].ok
    assert "'claude-nonexistent-1'" in results["anthropic model"].line()
    assert "ANTHROPIC_MODEL" in results["anthropic model"].line()


async def test_an_unknown_code_execution_tool(settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    results = by_name(await run_checks(replace(settings, code_execution_tool="code_execution_20990101")))
    assert results["anthropic model"].ok
    assert not results["code execution tool"].ok
    assert "CODE_EXECUTION_TOOL" in results["code execution tool"].line()


async def test_an_unreachable_database(settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"postgresql://threadbox:secret@127.0.0.1:{port}/threadbox"
    results = by_name(await run_checks(replace(settings, database_url=url)))
    assert not results["database"].ok
    line = results["database"].line()
    assert "DATABASE_URL" in line and "secret" not in line
    in_query = f"postgresql://threadbox@127.0.0.1:{port}/threadbox?sslmode=disable&password=hidden"
    line = by_name(await run_checks(replace(settings, database_url=in_query)))["database"].line()
    assert "hidden" not in line and "sslmode=disable" in line
    assert results["slack scopes"].ok and results["anthropic model"].ok


async def test_the_command_prints_one_line_per_check_and_exits_non_zero_on_a_failure(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": "secret",
        "SLACK_API_URL": slack.base_url,
        "ANTHROPIC_API_KEY": claude_api.api_key,
        "ANTHROPIC_BASE_URL": claude_api.base_url,
        "DATABASE_URL": settings.database_url,
    }

    async def run(env: dict[str, str]) -> tuple[int, list[str]]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "check", cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        return process.returncode or 0, out.decode().splitlines()

    code, lines = await run(env)
    assert code == 0, lines
    assert len(lines) == 8 and all(line.startswith("✓ ") for line in lines)

    slack.scopes.remove("files:read")
    code, lines = await run(env)
    assert code == 1
    assert [line for line in lines if line.startswith("✗ ")] == [
        "✗ slack scopes: missing files:read → add them under OAuth & Permissions (or paste manifest.yml"
        " again) and reinstall the app"
    ]

    code, lines = await run({k: v for k, v in env.items() if k != "ANTHROPIC_API_KEY"})
    assert code == 1 and lines == [
        "✗ settings: missing required setting(s): ANTHROPIC_API_KEY (see .env.example) → set it in .env or in"
        " the environment"
    ]


async def test_the_check_lists_custom_skills_without_uploading_them(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    folder = tmp_path / "skills" / "house-style"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text("---\nname: house-style\ndescription: Our style.\n---\n")
    results = by_name(await run_checks(replace(settings, skills=("pdf",), custom_skills_dir=str(folder.parent))))
    assert results["skills"].ok and results["skills"].detail == "pdf (Anthropic's), house-style (uploaded at start-up)"
    assert claude_api.skills.uploads == []
    missing = by_name(await run_checks(replace(settings, custom_skills_dir=str(tmp_path / "nowhere"))))
    assert not missing["skills"].ok and "CUSTOM_SKILLS_DIR" in missing["skills"].line()
