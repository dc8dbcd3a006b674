"""Text that reaches Slack from the model, a container or a user's file never pings anyone."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from bot.config import Settings
from bot.outbound.text import defuse_mentions
from tests.conftest import BotServer, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event

CHANNEL = "C1"
# Methods whose arguments Slack renders as message text (mentions in them notify people).
RENDERED = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream",
            "files.completeUploadExternal")
PING = re.compile(r"<(!channel|!here|!everyone|@U[A-Z0-9]+|!subteam\^[A-Z0-9]+)[|>]")


def pings(slack: FakeSlack) -> list[str]:
    found = []
    for call in slack.calls:
        if call.method in RENDERED:
            found += PING.findall(json.dumps(call.args, ensure_ascii=False))
    return found


async def test_mentions_from_the_model_the_container_and_file_names_never_ping(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    produced = claude_api.add_file("<!channel>.txt", b"hi")
    too_big = claude_api.add_file("<!here> big.bin", size=1100 * 1024 * 1024)
    shared = slack.add_user_file("<@U3> notes.txt", b"x")
    slack.fail_downloads_of(shared["id"], status=500)
    claude_api.enqueue(
        Reply([
            text("Checking with <!channel> first."),  # words before a run: the step's details
            *code_run("echo '<!here>'", stdout="<!channel> <@U2>", file_ids=[produced, too_big]),
            text("Telling <!channel> and <!here>, and <@U2|dana>, and <!subteam^S1>; a < b & c > d. <"),
            text("!everyone> too."),
            text("Done."),
        ])
    )
    root = "1700000901.000100"
    await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root, files=[shared]))
    await bot.wait_for(lambda: len(slack.uploads) == 1)
    await bot.idle()

    assert pings(slack) == []
    said = thread_text(slack, CHANNEL, root)
    assert "Telling <\u2060!channel> and <\u2060!here>" in said  # reads the same, pings no one
    assert "&lt;!here&gt; big.bin" in said  # a file name in a plain message is escaped
    assert "&lt;@U3&gt; notes.txt" in said
    assert slack.uploads[0]["filename"] == "<!channel>.txt"  # the file keeps its real name


async def test_mentions_in_the_streaming_fallback_never_ping(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    slack.fail("chat.startStream", error="not_allowed_token_type", times=-1)
    claude_api.enqueue(Reply([*code_run("echo <@U2>", stdout="<!here>"), text("Hey <!channel>!")]))
    root = "1700000902.000100"
    await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "Hey" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    assert pings(slack) == []


def test_code_keeps_its_html_while_every_ping_is_broken() -> None:
    html = "<!DOCTYPE html>\n<!-- a note -->\n<p>a &lt; b</p>"
    assert defuse_mentions(html) == html
    joined = defuse_mentions("<!channel> <!Here> <!everyone> <!group> <!subteam^S1> <@U2> <#C1>")
    assert "<" not in joined.replace("<\u2060", "")
    # A streamed piece may end where a mention begins; the next piece would complete it.
    assert defuse_mentions("say <!cha") == "say <\u2060!cha" and defuse_mentions("say <") == "say <\u2060"


def long_code_answer() -> str:
    """An answer whose one Python block runs far past a Slack message, with a mention in it."""
    lines = "\n".join(f"row_{n} = fetch('<!channel>', {n})  # `<@U2>`" for n in range(420))
    return f"Here is the script, <!here>:\n\n```python\n{lines}\n"


def code_blocks(message_text: str) -> list[str]:
    return re.findall(r"```(\w*)\n", message_text)


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "edited"])
async def test_a_long_code_block_is_split_as_code_and_the_note_after_it_is_not_code(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, streaming: bool
) -> None:
    async with running_bot(replace(settings, slack_streaming=streaming), slack) as bot:
        claude_api.enqueue(Reply([text(long_code_answer())], stop_reason="max_tokens"))
        root = "1700000903.000100"
        await bot.send_event(mention_event("write the script", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "length limit" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    texts = slack.thread_texts(CHANNEL, root)
    assert len(texts) >= 2, "the answer fits no single message"
    for message_text in texts:
        # Every message's code block is closed in it, and the ones after the first reopen it as Python.
        assert message_text.count("```") % 2 == 0, message_text[-200:]
    assert all(code_blocks(t)[:1] == ["python"] for t in texts)
    last = texts[-1]
    assert last.rindex("```") < last.index("length limit"), "the note landed inside the code block"
    code = "".join(re.findall(r"```python\n(.*?)```", "\n".join(texts), re.S))
    assert "\u2060" not in code and code.count("fetch('<!channel>'") == 420  # code as written, whole
    assert "Here is the script, <\u2060!here>" in texts[0]  # outside code, a mention is defused
    outside_code = [re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", t, flags=re.S)) for t in texts]
    assert [PING.findall(t) for t in outside_code] == [[] for _ in texts]  # nothing outside code pings
