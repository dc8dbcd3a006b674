"""A thread's work, kept: `!files` lists what it has seen, `!export` uploads a notebook and a zip."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import replace

import nbformat

from bot.config import Settings
from tests.conftest import BotServer, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, file_edit, text
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"
CSV = b"region,sales\nnorth,10\nsouth,12\n"
CHART = b"\x89PNG fake chart bytes"


async def in_thread(bot: BotServer, slack: FakeSlack, root: str, words: str, n: int, user: str = "U1") -> None:
    await bot.send_event(message_event(words, channel=CHANNEL, user=user, ts=f"{root[:-6]}{n:06d}", thread_ts=root))


async def a_thread_with_work(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, root: str) -> str:
    """A shared CSV, two code runs (the second makes a chart), a file written with the editor."""
    shared = slack.add_user_file("sales.csv", CSV)
    claude_api.enqueue(Reply([
        *code_run("head /mnt/user/sales.csv", stdout="region,sales\nnorth,10\n"),
        text("The file has two regions."),
    ]))
    await bot.send_event(mention_event("look at this", channel=CHANNEL, user="U1", ts=root, files=[shared]))
    await bot.wait_for(lambda: "two regions" in thread_text(slack, CHANNEL, root))
    chart = claude_api.add_file("chart.png", CHART)
    claude_api.enqueue(Reply([
        *file_edit("/tmp/plot.py", "print('plotting')\n"),
        *code_run("python /tmp/plot.py && cp chart.png \"$OUTPUT_DIR\"/", stdout="plotting\n", stderr="warn: dpi\n",
                  file_ids=[chart]),
        text("Here is the chart."),
    ]))
    await in_thread(bot, slack, root, "chart it", 200)
    await bot.wait_for(lambda: len(slack.uploads) == 1)
    await bot.idle()
    return chart


async def test_files_lists_what_came_in_and_went_out_and_marks_what_the_files_api_lost(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700008001.000100"
    chart = await a_thread_with_work(bot, slack, claude_api, root)
    requests = len(claude_api.requests)
    await in_thread(bot, slack, root, "!files", 300)
    await bot.wait_for(lambda: "Files in this thread" in thread_text(slack, CHANNEL, root))
    listing = thread_text(slack, CHANNEL, root).split("Files in this thread")[-1]
    assert "`sales.csv`, 31 bytes, shared with <https://fake-workspace.slack.com/archives/C1/p1700008001000100" in listing
    assert "`chart.png`, 21 bytes, made for <https://fake-workspace.slack.com/archives/C1/p1700008001000200" in listing
    assert listing.count("open in Slack") == 2 and "gone" not in listing
    del claude_api.files[chart]
    await in_thread(bot, slack, root, "!files", 400)
    await bot.wait_for(lambda: thread_text(slack, CHANNEL, root).count("Files in this thread") == 2)
    await bot.idle()
    latest = thread_text(slack, CHANNEL, root).split("Files in this thread")[-1]
    assert "`chart.png`" in latest.split("\n")[2] and "gone from the Files API" in latest.split("\n")[2]
    assert len(claude_api.requests) == requests  # no model call


async def test_export_uploads_a_valid_notebook_of_the_runs_in_order_and_a_zip_whose_manifest_matches(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700008002.000100"
    async with running_bot(settings_on_each_store, slack) as bot:
        await a_thread_with_work(bot, slack, claude_api, root)
        requests = len(claude_api.requests)
        await in_thread(bot, slack, root, "!export", 300)
        await bot.wait_for(lambda: len(slack.uploads) == 3)
        await bot.idle()
    assert len(claude_api.requests) == requests
    notebook_upload, zip_upload = slack.uploads[1], slack.uploads[2]
    assert notebook_upload["filename"] == f"thread-{root}.ipynb" and zip_upload["filename"] == f"thread-{root}.zip"
    assert notebook_upload["thread_ts"] == root == zip_upload["thread_ts"]
    notebook = nbformat.reads(notebook_upload["content"].decode(), as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.source for cell in code] == [
        "%%bash\nhead /mnt/user/sales.csv",
        "%%writefile /tmp/plot.py\nprint('plotting')\n",
        "%%bash\npython /tmp/plot.py && cp chart.png \"$OUTPUT_DIR\"/",
    ]
    streams = [(o.name, o.text) for o in code[2].outputs if o.output_type == "stream"]
    assert streams == [("stdout", "plotting\n"), ("stderr", "warn: dpi\n")]
    assert code[2].outputs[-1].data["text/plain"] == "return code 0"
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    assert markdown.index("look at this") < markdown.index("two regions") < markdown.index("chart it")
    with zipfile.ZipFile(io.BytesIO(zip_upload["content"])) as archive:
        manifest = json.loads(archive.read("MANIFEST.json"))
        assert set(archive.namelist()) == {f"thread-{root}.ipynb", "MANIFEST.json", "README.md",
                                           "files/sales.csv", "files/chart.png"}
        for entry in manifest["files"]:
            body = archive.read(entry["path"])
            assert hashlib.sha256(body).hexdigest() == entry["sha256"] and len(body) == entry["size"]
        assert archive.read("files/sales.csv") == CSV and archive.read("files/chart.png") == CHART
        assert "jupyter lab" in archive.read("README.md").decode()
    assert {(e["name"], e["direction"], e["turn"]) for e in manifest["files"]} == {
        ("sales.csv", "in", root), ("chart.png", "out", f"{root[:-6]}000200"),
    }


async def test_a_refused_person_gets_no_export_and_a_reset_empties_the_list(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700008003.000100"
    slack.users["UGUEST"] = {"is_restricted": True}
    async with running_bot(replace(settings), slack) as bot:
        await a_thread_with_work(bot, slack, claude_api, root)
        await in_thread(bot, slack, root, "!export", 300, user="UGUEST")
        await bot.idle()
        assert len(slack.uploads) == 1  # the chart only
        await in_thread(bot, slack, root, "!reset", 400)
        await bot.wait_for(lambda: "fresh" in thread_text(slack, CHANNEL, root).lower())
        await in_thread(bot, slack, root, "!files", 500)
        await bot.wait_for(lambda: "no files yet" in thread_text(slack, CHANNEL, root))


async def test_files_all_is_a_request_to_claude(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    root = "1700008004.000100"
    claude_api.enqueue(Reply([text("ready")]), Reply([text("Here is the listing.")]))
    await bot.send_event(mention_event("hello", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "ready" in thread_text(slack, CHANNEL, root))
    await in_thread(bot, slack, root, "!files all", 200)
    await bot.wait_for(lambda: "Here is the listing." in thread_text(slack, CHANNEL, root))
    await bot.idle()
    asked = json.dumps(claude_api.requests[-1]["messages"][-1])
    assert "List every file in this thread's container" in asked


def without_anchors(messages: list[dict]) -> list[dict]:
    """Messages without their prompt-cache breakpoints (which move from request to request)."""
    return json.loads(json.dumps(messages).replace(', "cache_control": {"type": "ephemeral"}', ""))


def forks_root(slack: FakeSlack) -> str:
    [opening] = [m for m in slack.messages if m.get("thread_ts") is None and "Forked from" in m.get("text", "")]
    return str(opening["ts"])


async def test_fork_starts_a_thread_with_the_history_and_every_file_in_a_container_of_its_own(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700008005.000100"
    async with running_bot(settings_on_each_store, slack) as bot:
        chart = await a_thread_with_work(bot, slack, claude_api, root)
        original = json.loads(json.dumps(claude_api.requests[-1]))
        original_container = claude_api.requests[-1]["container"]["id"]
        await in_thread(bot, slack, root, "!fork", 300)
        await bot.wait_for(lambda: "Forked into" in thread_text(slack, CHANNEL, root))
        fork = forks_root(slack)
        assert "<https://fake-workspace.slack.com/archives/C1/p1700008005000100|this thread>" in slack.rendered_text(
            next(m for m in slack.messages if m["ts"] == fork))
        claude_api.enqueue(Reply([text("Going another way.")]), Reply([text("Still in the fork.")]),
                           Reply([text("Back in the original.")]))
        await bot.send_event(message_event("try a bar chart", channel=CHANNEL, user="U1", ts=f"{fork[:-6]}000900",
                                           thread_ts=fork))
        await bot.wait_for(lambda: "Going another way." in thread_text(slack, CHANNEL, fork))
        first = claude_api.requests[-1]
        await bot.send_event(message_event("and again", channel=CHANNEL, user="U1", ts=f"{fork[:-6]}000950",
                                           thread_ts=fork))
        await bot.wait_for(lambda: "Still in the fork." in thread_text(slack, CHANNEL, fork))
        second = claude_api.requests[-1]
        await in_thread(bot, slack, root, "meanwhile here", 400)
        await bot.wait_for(lambda: "Back in the original." in thread_text(slack, CHANNEL, root))
        await bot.idle()
        back = claude_api.requests[-1]
    shared = next(b["file_id"] for m in original["messages"] for b in m["content"]
                  if isinstance(b, dict) and b.get("type") == "container_upload")
    # The fork's first request: the original's whole history (its last answer too), then its
    # message with every file.
    asked = len(original["messages"])
    assert without_anchors(first["messages"][:asked]) == without_anchors(original["messages"])
    assert len(first["messages"]) == asked + 2 and "Here is the chart." in json.dumps(first["messages"][asked])
    uploads = [b["file_id"] for b in first["messages"][-1]["content"] if b.get("type") == "container_upload"]
    assert sorted(uploads) == sorted([shared, chart])
    assert "id" not in first["container"]  # a new container, never the original's
    assert second["container"]["id"] != original_container
    assert not any(b.get("type") == "container_upload" for b in second["messages"][-1]["content"])
    assert back["container"]["id"] == original_container and len(back["messages"]) == len(original["messages"]) + 2


async def test_the_fork_button_under_files_forks_and_too_many_files_are_refused_with_words(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700008006.000100"
    async with running_bot(replace(settings, max_fork_files=1), slack) as bot:
        await a_thread_with_work(bot, slack, claude_api, root)
        await in_thread(bot, slack, root, "!files", 300)
        await bot.wait_for(lambda: "Files in this thread" in thread_text(slack, CHANNEL, root))
        listing = next(m for m in slack.thread(CHANNEL, root) if "Files in this thread" in m.get("text", ""))
        [button] = [e for b in listing["blocks"] if b["type"] == "actions" for e in b["elements"]]
        await bot.send_action(button["action_id"], button["value"], channel_id=CHANNEL, user_id="U1",
                              message=listing, message_ts=listing["ts"])
        await bot.wait_for(lambda: "can't fork this thread" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    assert "it has 2 file(s)" in thread_text(slack, CHANNEL, root) and "at most 1 files" in thread_text(slack, CHANNEL, root)
    assert not any("Forked from" in m.get("text", "") for m in slack.messages)


async def test_export_and_fork_work_in_a_dm(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic) -> None:
    dm = "D0WORK1"
    claude_api.enqueue(Reply([*code_run("echo hi", stdout="hi\n"), text("Said hi.")]))
    await bot.send_event(message_event("say hi", channel=dm, user="U1", ts="1700008007.000100", channel_type="im"))
    await bot.wait_for(lambda: "Said hi." in json.dumps(slack.messages))
    await bot.send_event(message_event("!export", channel=dm, user="U1", ts="1700008007.000200", channel_type="im"))
    await bot.wait_for(lambda: len(slack.uploads) == 2)
    await bot.send_event(message_event("!fork", channel=dm, user="U1", ts="1700008007.000300", channel_type="im"))
    await bot.wait_for(lambda: any("Forked from" in m.get("text", "") for m in slack.messages))
    fork = forks_root(slack)
    claude_api.enqueue(Reply([text("In the DM's fork.")]))
    await bot.send_event(message_event("go on", channel=dm, user="U1", ts="1700008007.000400", thread_ts=fork,
                                       channel_type="im"))
    await bot.wait_for(lambda: "In the DM's fork." in thread_text(slack, dm, fork))
    await bot.idle()
    assert [u["filename"] for u in slack.uploads] == [f"thread-{dm}.ipynb", f"thread-{dm}.zip"]
    notebook = nbformat.reads(slack.uploads[0]["content"].decode(), as_version=4)
    assert [c.source for c in notebook.cells if c.cell_type == "code"] == ["%%bash\necho hi"]
    first_of_fork = claude_api.requests[-1]
    assert "id" not in first_of_fork["container"] and "say hi" in json.dumps(first_of_fork["messages"][0])
