"""Users' files go into the container; produced files come back; large files stay out of memory."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from dataclasses import replace
from typing import Any

from bot.config import Settings
from tests.conftest import BotServer, container_of, running_bot, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"
MB = 1024 * 1024


def uploads_in(request: dict) -> list[str]:
    return [block["file_id"] for block in request["messages"][-1]["content"] if block["type"] == "container_upload"]


async def test_shared_files_are_placed_in_the_container_and_announced(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    data = slack.add_user_file("sales.csv", b"region,amount\nnorth,10\nsouth,20\n", mimetype="text/csv")
    notes = slack.add_user_file("notes.txt", b"remember the south", mimetype="text/plain")
    root = "1700000501.000100"
    await bot.send_event(mention_event("summarize these", channel=CHANNEL, user="U1", ts=root, files=[data, notes]))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()

    assert [d["authorized"] for d in slack.downloads] == [True, True]
    by_name = {f["filename"]: f for f in claude_api.uploaded}
    assert by_name["sales.csv"]["content"] == b"region,amount\nnorth,10\nsouth,20\n"
    assert by_name["notes.txt"]["content"] == b"remember the south"
    request = claude_api.requests[0]
    assert uploads_in(request) == [by_name["sales.csv"]["id"], by_name["notes.txt"]["id"]]
    said = request["messages"][-1]["content"][0]["text"]
    assert said.startswith(said_by("U1", "summarize these")) and "sales.csv" in said and "notes.txt" in said


async def test_a_follow_up_file_joins_the_earlier_ones_in_the_same_container(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000502.000100"
    first = slack.add_user_file("a.txt", b"first")
    await bot.send_event(mention_event("keep this", channel=CHANNEL, user="U1", ts=root, files=[first]))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()
    second = slack.add_user_file("b.txt", b"second")
    # A file shared in the thread without any words still reaches the container.
    await bot.send_event(
        message_event("", channel=CHANNEL, user="U1", ts="1700000502.000200", thread_ts=root, files=[second])
    )
    await bot.wait_for(lambda: len(claude_api.requests) == 2)
    await bot.idle()

    follow_up = claude_api.requests[1]
    assert container_of(follow_up) == next(iter(claude_api.containers))
    ids = {f["filename"]: f["id"] for f in claude_api.uploaded}
    assert uploads_in(follow_up) == [ids["b.txt"]]
    assert ids["a.txt"] in str(follow_up["messages"][0]["content"])  # still in the history
    assert "b.txt" in follow_up["messages"][-1]["content"][0]["text"]


async def test_files_that_cannot_go_in_are_refused_clearly(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, max_file_bytes=1 * MB), slack) as bot:
        big = slack.add_user_file("huge.bin", size=3 * MB, mimetype="application/octet-stream")
        broken = slack.add_user_file("broken.txt", b"x")
        slack.fail_downloads_of(broken["id"], status=500)
        fine = slack.add_user_file("fine.txt", b"fine")
        root = "1700000503.000100"
        await bot.send_event(mention_event("use them", channel=CHANNEL, user="U1", ts=root, files=[big, broken, fine]))
        await bot.wait_for(lambda: len(claude_api.requests) == 1)
        await bot.idle()

        said = thread_text(slack, CHANNEL, root)
        assert "`huge.bin` is 3.0 MB; the limit is 1.0 MB" in said
        assert "broken.txt" in said and "500" in said
        assert [f["filename"] for f in claude_api.uploaded] == ["fine.txt"]
        assert big["id"] not in [d["file_id"] for d in slack.downloads]
        assert "fine.txt" in claude_api.requests[0]["messages"][-1]["content"][0]["text"]


async def test_a_sign_in_page_instead_of_the_file_is_explained(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.files_read_scope = False
    shared = slack.add_user_file("data.csv", b"a,b\n")
    root = "1700000504.000100"
    await bot.send_event(mention_event("", channel=CHANNEL, user="U1", ts=root, files=[shared]))
    await bot.wait_for(lambda: "files:read" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert claude_api.uploaded == []
    assert claude_api.requests == []  # nothing else was asked, so there was nothing to run
    assert "nothing to do" in thread_text(slack, CHANNEL, root)


async def test_users_files_are_not_echoed_back_as_outputs(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    shared = slack.add_user_file("input.csv", b"x,y\n1,2\n")
    echo = claude_api.add_file("input.csv", b"x,y\n1,2\n", mime_type="text/csv")
    result = claude_api.add_file("summary.txt", b"two columns")
    claude_api.enqueue(Reply([*code_run("cp input.csv out/ && summarize", file_ids=[echo, result]), text("Done.")]))
    root = "1700000505.000100"
    await bot.send_event(mention_event("summarize", channel=CHANNEL, user="U1", ts=root, files=[shared]))
    await bot.wait_for(lambda: "Done." in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert [upload["title"] for upload in slack.uploads] == ["summary.txt"]


async def test_files_over_slacks_upload_limit_get_a_message(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    giant = claude_api.add_file("giant.bin", size=1100 * MB)
    claude_api.enqueue(Reply([*code_run("make giant", file_ids=[giant]), text("Made it.")]))
    root = "1700000506.000100"
    await bot.send_event(mention_event("make a giant file", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "over Slack's upload limit" in thread_text(slack, CHANNEL, root))
    assert slack.uploads == [] and claude_api.downloads == []


async def relay_both_ways(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, size: int, root: str) -> int:
    """Relay one file of `size` bytes each way through the bot; returns peak traced memory."""
    incoming = slack.add_user_file(f"in-{root}.bin", size=size, mimetype="application/octet-stream")
    produced = claude_api.add_file(f"out-{root}.bin", size=size, mime_type="application/octet-stream")
    claude_api.enqueue(Reply([*code_run("transform", file_ids=[produced]), text("Transformed.")]))
    uploads_before = len(slack.uploads)
    tracemalloc.start()
    try:
        await bot.send_event(mention_event("transform", channel=CHANNEL, user="U1", ts=root, files=[incoming]))
        await bot.wait_for(lambda: len(slack.uploads) > uploads_before, timeout=120)
        await bot.idle()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    into_container = claude_api.uploaded[-1]
    assert into_container["size"] == size and into_container["sha256"] == slack.expected_sha256(incoming)
    into_thread = slack.uploads[-1]
    assert into_thread["size"] == size and into_thread["sha256"] == claude_api.expected_sha256(produced)
    assert into_thread["thread_ts"] == root and into_thread["title"] == f"out-{root}.bin"
    # The three-step upload was used, with the length announced up front.
    assert int(slack.calls_to("files.getUploadURLExternal")[-1]["length"]) == size
    return peak


async def test_large_files_are_relayed_in_chunks_both_ways(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    """Memory must not grow with the file: an 8x larger file costs (almost) no more memory."""
    async with running_bot(replace(settings, max_file_bytes=500 * MB), slack) as bot:
        small = await relay_both_ways(bot, slack, claude_api, 16 * MB, "1700000507.000100")
        large = await relay_both_ways(bot, slack, claude_api, 128 * MB, "1700000508.000100")
        assert large < small + 16 * MB, f"peak {small / MB:.1f} MB for 16 MB, {large / MB:.1f} MB for 128 MB"


async def test_a_download_cut_short_is_reported_and_the_other_files_still_arrive(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    cut = claude_api.add_file("cut.bin", size=2 * MB)
    claude_api.fail_download(cut, after_bytes=512 * 1024)
    whole = claude_api.add_file("whole.txt", b"all here")
    claude_api.enqueue(Reply([*code_run("make both", file_ids=[cut, whole]), text("Made both.")]))
    root = "1700000509.000100"
    await bot.send_event(mention_event("make both", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "couldn't download `cut.bin`" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert [upload["title"] for upload in slack.uploads] == ["whole.txt"]


async def test_a_shared_html_file_is_a_file_not_a_sign_in_page(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    page = slack.add_user_file("report.html", b"<html><body><h1>Q3</h1></body></html>", mimetype="text/html")
    root = "1700000510.000100"
    await bot.send_event(mention_event("what does this page say?", channel=CHANNEL, user="U1", ts=root, files=[page]))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()
    assert [f["filename"] for f in claude_api.uploaded] == ["report.html"]
    assert claude_api.uploaded[0]["content"] == b"<html><body><h1>Q3</h1></body></html>"
    assert "sign-in page" not in thread_text(slack, CHANNEL, root)


async def test_a_stalled_download_from_slack_ends_as_a_message_for_that_file(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, file_timeout_seconds=0.5), slack) as bot:
        slack.delay("download", 5)
        stalled = slack.add_user_file("stalled.csv", b"a,b\n")
        root = "1700000511.000100"
        await bot.send_event(mention_event("read it", channel=CHANNEL, user="U1", ts=root, files=[stalled]))
        await bot.wait_for(lambda: len(claude_api.requests) == 1)
        await bot.idle()
        said = thread_text(slack, CHANNEL, root)
        assert "couldn't download `stalled.csv` from Slack: no data for 0.5 seconds" in said
        assert claude_api.uploaded == []  # the turn went on without it
        assert "went wrong" not in said


async def test_a_stalled_output_download_is_reported_and_the_other_files_still_arrive(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, file_timeout_seconds=0.5), slack) as bot:
        stuck = claude_api.add_file("stuck.bin", size=1 * MB)
        claude_api.stall_download(stuck, seconds=5)
        fine = claude_api.add_file("fine.txt", b"fine")
        claude_api.enqueue(Reply([*code_run("make both", file_ids=[stuck, fine]), text("Made both.")]))
        root = "1700000512.000100"
        await bot.send_event(mention_event("make both", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "couldn't download `stuck.bin`" in thread_text(slack, CHANNEL, root))
        await bot.idle()
        assert [upload["title"] for upload in slack.uploads] == ["fine.txt"]


async def test_a_slow_slack_while_sharing_outputs_ends_as_one_line_naming_each_file(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    async with running_bot(replace(settings, file_timeout_seconds=0.5), slack) as bot:
        slack.delay("files.completeUploadExternal", 3)
        first = claude_api.add_file("one.txt", b"1")
        second = claude_api.add_file("two.txt", b"2")
        claude_api.enqueue(Reply([*code_run("make two", file_ids=[first, second]), text("Made two.")]))
        root = "1700000513.000100"
        await bot.send_event(mention_event("make two", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "`two.txt`" in thread_text(slack, CHANNEL, root), timeout=30)
        await bot.idle()
        said = thread_text(slack, CHANNEL, root)
        # The two files are shared together, in one call: its failure names both.
        assert "couldn't finish the upload of `one.txt`, `two.txt`: no answer within 0.5 seconds" in said
        assert len(slack.calls_to("files.completeUploadExternal")) == 1
        assert "Made two." in said and "went wrong" not in said


async def test_a_slack_error_while_finishing_the_reply_does_not_skip_the_files(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.fail("chat.stopStream", error="internal_error", times=-1)
    slack.fail("chat.update", error="internal_error", times=-1)
    chart = claude_api.add_file("chart.png", b"\x89PNG")
    claude_api.enqueue(Reply([*code_run("plot", file_ids=[chart]), text("Plotted.")]))
    root = "1700000514.000100"
    await bot.send_event(mention_event("plot", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: len(slack.uploads) == 1)
    await bot.idle()
    assert slack.uploads[0]["title"] == "chart.png" and slack.uploads[0]["thread_ts"] == root


async def zip_of(
    bot: BotServer, claude_api: FakeAnthropic, produced: dict[str, bytes], root: str, breaks: str | None = None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The code makes `produced` (the download of `breaks` drops part-way); the zip that
    arrives, and what is in it."""
    ids = {name: claude_api.add_file(name, content) for name, content in produced.items()}
    if breaks is not None:
        claude_api.fail_download(ids[breaks], after_bytes=100)
    claude_api.enqueue(Reply([*code_run("split", file_ids=list(ids.values())), text("Split into 12.")]))
    await bot.send_event(mention_event("split it", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: len(bot.slack.uploads) == 1)
    await bot.idle()
    [upload] = bot.slack.uploads
    with zipfile.ZipFile(io.BytesIO(upload["content"])) as archive:
        return upload, {name: archive.read(name) for name in archive.namelist()}


async def test_many_outputs_arrive_as_one_zip_with_a_listing(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    assert bot.settings.max_output_files == 10
    produced = {f"part-{n:02d}.csv": f"row {n}\n".encode() for n in range(12)}
    root = "1700000515.000100"
    upload, contents = await zip_of(bot, claude_api, produced, root)
    assert upload["title"] == "files.zip" and upload["thread_ts"] == root
    assert contents == produced
    listing = upload["initial_comment"]
    assert listing.startswith("12 files") and all(f"`{name}`" in listing for name in produced)


async def test_a_file_whose_download_breaks_is_left_out_of_the_zip_whole(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    produced = {f"part-{n:02d}.csv": f"row {n}\n".encode() * 50 for n in range(12)}
    root = "1700000517.000100"
    upload, contents = await zip_of(bot, claude_api, produced, root, breaks="part-03.csv")
    assert contents == {name: data for name, data in produced.items() if name != "part-03.csv"}
    assert upload["initial_comment"].startswith("11 files")
    assert "part-03.csv" in thread_text(slack, CHANNEL, root)  # named as left out


async def test_ten_outputs_still_arrive_one_by_one(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    ids = [claude_api.add_file(f"f{n}.txt", b"x") for n in range(10)]
    claude_api.enqueue(Reply([*code_run("make ten", file_ids=ids), text("Ten.")]))
    await bot.send_event(mention_event("ten", channel=CHANNEL, user="U1", ts="1700000516.000100"))
    await bot.wait_for(lambda: len(slack.uploads) == 10)
    await bot.idle()
    assert sorted(u["title"] for u in slack.uploads) == sorted(f"f{n}.txt" for n in range(10))


async def test_a_zip_interrupted_by_a_crash_is_shared_once_after_restart(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000517.000100"
    ids = [claude_api.add_file(f"part-{n:02d}.txt", b"x") for n in range(11)]
    async with running_bot(settings, slack) as bot:
        claude_api.enqueue(Reply([*code_run("split", file_ids=ids), text("Split into 11.")]))
        # The zip's upload completes at Slack while the process dies waiting for the answer.
        slack.delay("files.completeUploadExternal", 1.0)
        await bot.send_event(mention_event("split it", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: len(slack.calls_to("files.completeUploadExternal")) == 1)
        await bot.kill()
    slack.delay("files.completeUploadExternal", 0)

    async with running_bot(settings, slack) as restarted:
        await restarted.wait_for(lambda: len(slack.uploads) == 1)
        await restarted.idle()
    [upload] = slack.uploads
    assert upload["title"] == "files.zip" and upload["initial_comment"].startswith("11 files")
    assert len(claude_api.requests) == 1
