"""Agent Skills in the container, and the web tools on Anthropic's side, through the real bot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.app import create_runtime
from bot.config import Settings
from bot.errors import StartupError
from bot.model.web import WebTools
from storage import ThreadKey
from tests.conftest import BotServer, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.anthropic_web import cited, web_fetch, web_search
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"
ANTHROPIC_FOUR = [{"type": "anthropic", "skill_id": name, "version": "latest"} for name in ("xlsx", "pptx", "docx", "pdf")]


def skills_sent(request: dict[str, Any]) -> list[dict[str, Any]]:
    return list(request["container"]["skills"])


def tool(request: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in request["tools"] if t.get("name") == name), None)


async def test_a_spreadsheet_request_sends_the_skills_and_the_xlsx_arrives(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700005001.000100"
    claude_api.enqueue(Reply([
        *code_run("python /skills/xlsx/make.py && cp report.xlsx \"$OUTPUT_DIR\"/",
                  writes={"$OUTPUT_DIR/report.xlsx": b"PK\x03\x04 xlsx bytes"}),
        text("Here is the spreadsheet."),
    ]))
    await bot.send_event(mention_event("make me a spreadsheet of Q3", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: len(slack.uploads) == 1)
    await bot.idle()
    assert slack.uploads[0]["filename"] == "report.xlsx" and slack.uploads[0]["thread_ts"] == root
    assert skills_sent(claude_api.requests[0]) == ANTHROPIC_FOUR


async def test_a_thread_keeps_its_skill_list_byte_for_byte_until_it_is_reset(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700005002.000100"
    async with running_bot(settings, slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("one")]), "first", root=root, shows="one")
        claude_api.enqueue(Reply([text("two")]))
        await bot.send_event(message_event("second", channel=CHANNEL, user="U1", ts="1700005002.000200", thread_ts=root))
        await bot.wait_for(lambda: "two" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    # The settings change; the running thread keeps its list (its cache and container hold).
    async with running_bot(replace(settings, skills=("pdf",)), slack) as bot:
        claude_api.enqueue(Reply([text("three")]))
        await bot.send_event(message_event("third", channel=CHANNEL, user="U1", ts="1700005002.000300", thread_ts=root))
        await bot.wait_for(lambda: "three" in thread_text(slack, CHANNEL, root))
        await bot.send_event(message_event("!reset", channel=CHANNEL, user="U1", ts="1700005002.000400", thread_ts=root))
        await bot.wait_for(lambda: "fresh" in thread_text(slack, CHANNEL, root).lower())
        claude_api.enqueue(Reply([text("four")]))
        await bot.send_event(message_event("fourth", channel=CHANNEL, user="U1", ts="1700005002.000500", thread_ts=root))
        await bot.wait_for(lambda: "four" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    sent = [json.dumps(r["container"]["skills"]) for r in claude_api.requests]
    assert sent[0] == sent[1] == sent[2] == json.dumps(ANTHROPIC_FOUR)
    assert json.loads(sent[3]) == [{"type": "anthropic", "skill_id": "pdf", "version": "latest"}]


def write_skill(root: Path, name: str, body: str = "Use helper.py.") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {body}\n---\n# {name}\n{body}\n")
    (folder / "helper.py").write_text("print('helping')\n")
    return folder


async def test_a_custom_skill_is_uploaded_once_across_restarts_and_again_when_it_changes(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    skills_dir = tmp_path / "skills"
    write_skill(skills_dir, "house-style")
    (skills_dir / "notes").mkdir()  # a folder without SKILL.md is not a skill
    custom = replace(settings, custom_skills_dir=str(skills_dir))
    for _ in range(2):
        async with running_bot(custom, slack):
            pass
    [upload] = claude_api.skills.uploads
    assert upload["paths"] == ["house-style/SKILL.md", "house-style/helper.py"]

    (skills_dir / "house-style" / "helper.py").write_text("print('helping better')\n")
    async with running_bot(custom, slack) as bot:
        root = "1700005003.000100"
        await bot.mention_and_wait(claude_api, Reply([text("styled")]), "in house style", root=root, shows="styled")
    first, second = claude_api.skills.uploads
    assert second["skill_id"] == first["skill_id"] and second["version"] != first["version"]
    assert skills_sent(claude_api.requests[-1])[-1] == {
        "type": "custom", "skill_id": first["skill_id"], "version": second["version"]  # pinned, not `latest`
    }


async def test_a_broken_custom_skill_stops_start_up_naming_its_folder(
    settings: Settings, claude_api: FakeAnthropic, tmp_path: Path
) -> None:
    folder = write_skill(tmp_path / "skills", "Bad_Name")
    with pytest.raises(StartupError) as refused:
        await create_runtime(replace(settings, custom_skills_dir=str(folder.parent)))
    assert "Bad_Name/" in str(refused.value) and "name" in str(refused.value)

    many = replace(settings, custom_skills_dir=str(tmp_path / "many"))
    for n in range(17):
        write_skill(tmp_path / "many", f"skill-{n}")
    with pytest.raises(StartupError, match="at most 20"):
        await create_runtime(many)
    assert claude_api.skills.uploads == []  # too many is found before anything is uploaded


async def test_a_linked_page_is_read_and_shown_as_a_source(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    url = "https://docs.example.com/release-notes"
    root = "1700005004.000100"
    claude_api.enqueue(Reply([
        *web_fetch(url, "Release notes 4.2", "4.2 drops Python 3.9 support."),
        text("The page says 4.2 drops Python 3.9."),
    ]))
    await bot.send_event(mention_event(f"what does <{url}> say?", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "drops Python 3.9" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    fetch = tool(claude_api.requests[0], "web_fetch")
    assert fetch is not None and fetch["allowed_callers"] == ["direct"]
    assert fetch["url_sources"]["user_input"] == {"type": "all"}
    assert fetch["url_sources"]["server_tool_results"] == {"type": "none"}  # search is off
    [stop] = slack.calls_to("chat.stopStream")
    assert f"<{url}|Release notes 4.2>" in json.dumps(stop["blocks"])  # under the answer
    [reply] = slack.thread(CHANNEL, root)
    [step] = slack.task_updates(reply).values()
    assert step["sources"] == [{"type": "url", "url": url, "text": "Release notes 4.2"}]
    spent = await bot.runtime.store.thread_usage(ThreadKey("T1", CHANNEL, root))
    assert spent.web_fetches == 1 and spent.code_runs == 0


async def test_a_url_only_the_code_printed_is_refused_by_the_tool_settings(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700005005.000100"
    claude_api.enqueue(Reply([
        *code_run("grep -o 'https://[^ ]*' data.txt", stdout="https://internal.example.com/secret"),
        *web_fetch("https://internal.example.com/secret", "Secret", "nothing"),
        text("I could not read that page."),
    ]))
    await bot.send_event(mention_event("follow the link in data.txt", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "could not read" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    [reply] = slack.thread(CHANNEL, root)
    fetch_step = [s for s in slack.task_updates(reply).values() if "internal.example.com" in s["title"]]
    assert fetch_step[0]["status"] == "error" and "url not in prior context" in fetch_step[0]["output"]
    # What was refused comes back to the API as the API sent it, and is accepted.
    claude_api.enqueue(Reply([text("ok")]))
    await bot.send_event(message_event("fine", channel=CHANNEL, user="U1", ts="1700005005.000200", thread_ts=root))
    await bot.wait_for(lambda: len(claude_api.requests) == 2)


async def test_search_is_off_by_default_and_counted_and_priced_when_on(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    assert settings.web.search is False
    searching = replace(settings, web=replace(settings.web, search=True), show_usage=True)
    root = "1700005006.000100"
    async with running_bot(searching, slack) as bot:
        results = [("https://a.example.com/x", "A"), ("https://b.example.com/y", "B")]
        claude_api.enqueue(Reply([
            *web_search("python 3.14 release date", results),
            *web_fetch("https://a.example.com/x", "A", "Released in October."),  # a URL the search found
            cited("Python 3.14 came out in October.", "https://a.example.com/x", "A", "Released in October."),
        ]))
        await bot.send_event(mention_event("when did python 3.14 come out?", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "came out in October" in thread_text(slack, CHANNEL, root))
        await bot.idle()
        search = tool(claude_api.requests[0], "web_search")
        assert search is not None and search["max_uses"] == 5
        spent = await bot.runtime.store.thread_usage(ThreadKey("T1", CHANNEL, root))
        assert (spent.web_searches, spent.web_fetches) == (1, 1)
        closing = json.dumps(slack.calls_to("chat.stopStream")[-1]["blocks"])
        assert "1 web search" in closing and "1 page read" in closing  # the closing line (SHOW_USAGE)
        assert "code run" not in closing  # web tools are not code runs
        # The next turn sends the search results back sealed as they came (the API refuses
        # them otherwise), and `!usage` prices the search.
        claude_api.enqueue(Reply([text("Anything else?")]))
        await bot.send_event(message_event("thanks", channel=CHANNEL, user="U1", ts="1700005006.000150", thread_ts=root))
        await bot.wait_for(lambda: "Anything else?" in thread_text(slack, CHANNEL, root))
        sent_back = json.dumps(claude_api.requests[-1]["messages"][1]["content"])
        assert "encrypted_content" in sent_back and "encrypted_index" in sent_back
        await bot.send_event(message_event("!usage", channel=CHANNEL, user="U1", ts="1700005006.000200", thread_ts=root))
        await bot.wait_for(lambda: "Usage in this thread" in thread_text(slack, CHANNEL, root))
        assert bot.runtime.settings.prices.cost(spent) >= 0.01
    async with running_bot(settings, slack) as bot:
        await bot.mention_and_wait(claude_api, Reply([text("plain")]), "hi", root="1700005006.000300", shows="plain")
    assert tool(claude_api.requests[-1], "web_search") is None


def test_web_tool_settings_refuse_what_the_api_would() -> None:
    tools = WebTools(fetch=True, search=True, allowed_domains=("example.com",)).tools()
    assert [t["name"] for t in tools] == ["web_search", "web_fetch"]
    assert all(t.get("allowed_domains") == ["example.com"] and "blocked_domains" not in t for t in tools)
