"""Claude as the API is today: files come back only from `$OUTPUT_DIR`, current models write
their words between code runs as thinking, the model's own limits, and nothing lost when a turn
fails or is refused."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.policy.usage import Prices
from storage import ThreadKey
from tests.conftest import BotServer, running_bot, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import ErrorReply, ModelSpec, Reply, code_run, file_edit, text
from tests.fakes.slack_api import mention_event, message_event
from tests.processes import bot_process_env

CHANNEL = "C1"
OVERLOADED = ErrorReply(529, "overloaded_error", "Overloaded")


async def ask(bot: BotServer, root: str, words: str, *, shows: str, user: str = "U1", files: list | None = None) -> str:
    """A mention starting thread `root`; returns the thread once it shows `shows` and all is done."""
    await bot.send_event(mention_event(words, channel=CHANNEL, user=user, ts=root, files=files or []))
    await bot.wait_for(lambda: shows in thread_text(bot.slack, CHANNEL, root))
    await bot.idle()
    return thread_text(bot.slack, CHANNEL, root)


async def follow_up(bot: BotServer, root: str, ts: str, words: str, *, shows: str) -> str:
    await bot.send_event(message_event(words, channel=CHANNEL, user="U1", ts=ts, thread_ts=root))
    await bot.wait_for(lambda: shows in thread_text(bot.slack, CHANNEL, root))
    await bot.idle()
    return thread_text(bot.slack, CHANNEL, root)


# --- files out by the real rule ---------------------------------------------------------------


async def test_only_files_at_the_top_of_output_dir_reach_the_thread(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(Reply([
        *code_run(
            "python analyse.py",
            writes={"/tmp/chart.png": b"PNG", "$OUTPUT_DIR/summary.csv": b"a,b\n", "$OUTPUT_DIR/parts/x.csv": b"x"},
        ),
        text("Done."),
    ]))
    await ask(bot, "1700000801.000100", "analyse it", shows="Done.")
    assert [upload["title"] for upload in slack.uploads] == ["summary.csv"]
    prompt = claude_api.requests[0]["system"][0]["text"]
    assert "$OUTPUT_DIR" in prompt and "same bash command" in prompt and "text editor" in prompt


async def test_a_text_editor_file_comes_out_once_copied_to_output_dir(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(Reply([
        *file_edit("/tmp/report.md", "# Report\n"),
        *code_run('cp /tmp/report.md "$OUTPUT_DIR"/ && ls "$OUTPUT_DIR"', stdout="report.md\n"),
        text("Here is report.md."),
    ]))
    said = await ask(bot, "1700000802.000100", "write a report", shows="Here is report.md.")
    assert [upload["title"] for upload in slack.uploads] == ["report.md"]
    assert "not shared" not in said
    assert "make with the text editor is shared the same way" in claude_api.requests[0]["system"][0]["text"]


async def test_a_file_the_answer_names_but_never_shared_is_explained(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    claude_api.enqueue(Reply([
        *code_run("python plot.py && df.to_csv('table.csv')", stdout="Saved chart.png\n",
                  writes={"chart.png": b"PNG", "table.csv": b"t"}),
        text("I saved chart.png for you (plot.py made it)."),
    ]))
    said = await ask(bot, "1700000803.000100", "plot it", shows="I saved chart.png")
    await bot.wait_for(lambda: "not shared" in thread_text(slack, CHANNEL, "1700000803.000100"))
    said = thread_text(slack, CHANNEL, "1700000803.000100")
    note = next(line for line in said.splitlines() if "not shared" in line)
    assert "`chart.png`" in note and "$OUTPUT_DIR" in note
    assert "table.csv" not in note and "plot.py" not in note  # not named in the answer; a script
    assert slack.uploads == []


# --- words between code runs ------------------------------------------------------------------


async def test_words_between_code_runs_show_on_the_steps_and_thinking_goes_back_as_received(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000804.000100"
    claude_api.enqueue(Reply([
        text("First I load the data."), *code_run("python load.py", stdout="loaded"),
        text("Now the chart."), *code_run("python chart.py", stdout="drawn"),
        text("All done."),
    ]))
    await ask(bot, root, "chart it", shows="All done.")
    [reply] = [m for m in slack.thread(CHANNEL, root) if m.get("stream")]
    details = [task.get("details") for task in slack.task_updates(reply).values()]
    assert details == ["First I load the data.", "Now the chart."]
    assert "First I load the data." not in slack.rendered_text(reply)  # words for the steps, not the answer

    claude_api.enqueue(Reply([text("Still here.")]))
    await follow_up(bot, root, "1700000804.000200", "and now?", shows="Still here.")
    sent = claude_api.requests[1]["messages"][1]["content"]
    assert [block["type"] for block in sent].count("thinking") == 2  # signed blocks, accepted back as they came
    for request in claude_api.requests:
        assert not {"temperature", "top_p", "top_k"} & set(request)
        assert (request.get("thinking") or {}).get("type") != "disabled"
        assert (request.get("tool_choice") or {}).get("type") not in ("any", "tool")


# --- the model's own limits -------------------------------------------------------------------


def test_defaults_follow_the_model_and_the_newest_tool() -> None:
    required = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "ANTHROPIC_API_KEY": "k"}
    defaults = load_settings(required, dotenv=False)
    assert defaults.code_execution_tool == "code_execution_20260521"
    assert defaults.max_tokens is None and defaults.context_window is None  # the model's, asked at start-up
    assert defaults.prices == Prices(input=2.0, cache_write=2.5, cache_read=0.2, output=10.0)
    opus = load_settings({**required, "ANTHROPIC_MODEL": "claude-opus-5-5"}, dotenv=False)
    assert opus.prices == Prices(input=4.0, cache_write=5.0, cache_read=0.4, output=20.0)
    custom = load_settings({**required, "ANTHROPIC_MODEL": "claude-opus-5-5", "USAGE_PRICES": "output=30"}, dotenv=False)
    assert custom.prices == Prices(input=4.0, cache_write=5.0, cache_read=0.4, output=30.0)


async def test_requests_use_the_models_output_limit_and_window(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    long_output = "x" * 420_000  # about 140k tokens: past half of a 200k window, far inside 1M
    async with running_bot(replace(settings, anthropic_model="claude-haiku-5-5"), slack) as bot:
        root = "1700000805.000100"
        claude_api.enqueue(Reply([*code_run("cat big.log", stdout=long_output), text("Read it.")]))
        await ask(bot, root, "read the log", shows="Read it.")
        claude_api.enqueue(Reply([text("Noted.")]))
        said = await follow_up(bot, root, "1700000805.000200", "and?", shows="Noted.")
    first, second = claude_api.requests
    assert first["max_tokens"] == second["max_tokens"] == 64_000  # Haiku 5.5's own limit
    assert long_output in str(second["messages"][1]["content"])  # nothing trimmed far from the window
    assert "left out" not in said


async def test_a_deprecated_model_is_warned_about_with_its_retirement_date(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        async with running_bot(replace(settings, anthropic_model="claude-haiku-4-5"), slack) as bot:
            claude_api.enqueue(Reply([text("Still answering.")]))
            await ask(bot, "1700000806.000100", "hi", shows="Still answering.")
    [warning] = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert "claude-haiku-4-5" in warning and "2027-02-15" in warning


async def test_a_retired_model_stops_start_up_with_one_line(
    tmp_path: Path, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    env = bot_process_env(tmp_path, slack, claude_api, SLACK_SIGNING_SECRET="s", ANTHROPIC_MODEL="claude-sonnet-4-5")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    *_logged, line = stderr.decode().strip().splitlines()  # after the log lines of start-up, one line
    assert line.startswith("threadbox: ") and "Traceback" not in stderr.decode()
    assert "claude-sonnet-4-5" in line and "retired" in line and "ANTHROPIC_MODEL" in line


async def test_check_reads_the_model_and_refuses_one_without_code_execution(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    from bot.check import run_checks

    results = {r.name: r for r in await run_checks(settings)}
    assert results["anthropic model"].ok and "1,000,000-token window" in results["anthropic model"].detail
    claude_api.models["claude-plain-5"] = ModelSpec("Claude Plain 5", code_execution=False)
    results = {r.name: r for r in await run_checks(replace(settings, anthropic_model="claude-plain-5"))}
    assert not results["anthropic model"].ok and "no code execution tool" in results["anthropic model"].line()
    deprecated = {r.name: r for r in await run_checks(replace(settings, anthropic_model="claude-haiku-4-5"))}
    assert deprecated["anthropic model"].ok and "retires 2027-02-15" in deprecated["anthropic model"].line()


# --- nothing lost when a turn fails -----------------------------------------------------------


async def test_a_failed_turn_keeps_the_message_and_its_file_for_the_next_turn_and_the_reset(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000807.000100"
    data = slack.add_user_file("sales.csv", b"region,amount\n")
    claude_api.enqueue(ErrorReply(500, "api_error", "Internal"), ErrorReply(500, "api_error", "Internal"),
                       ErrorReply(500, "api_error", "Internal"))  # the SDK's two retries too
    await ask(bot, root, "sum the sales", shows="overloaded or having trouble", files=[data])
    [uploaded] = claude_api.uploaded
    claude_api.enqueue(Reply([text("Summed.")]))
    await follow_up(bot, root, "1700000807.000200", "try again", shows="Summed.")
    first_user = claude_api.requests[-1]["messages"][0]["content"]
    assert "sum the sales" in first_user[0]["text"]
    assert uploaded["id"] in [block.get("file_id") for block in first_user if block["type"] == "container_upload"]
    await follow_up(bot, root, "1700000807.000300", "!reset", shows="Fresh start")
    assert uploaded["id"] not in claude_api.files  # tracked, so the reset deleted it


async def test_an_overloaded_stream_is_retried_and_the_thread_shows_one_answer(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000808.000100"
    claude_api.enqueue(
        Reply([*code_run("python step1.py", stdout="one")], stream_error=OVERLOADED),
        Reply([text("Both steps ran.")]),
    )
    said = await ask(bot, root, "run the steps", shows="Both steps ran.")
    assert "overloaded" not in said.lower() and said.count("Both steps ran.") == 1
    retry = claude_api.requests[1]["messages"]
    assert retry[-1]["role"] == "assistant"  # continued after the run that had finished
    assert [b["type"] for b in retry[-1]["content"]] == ["server_tool_use", "bash_code_execution_tool_result"]


async def test_an_error_after_words_were_shown_keeps_what_ran_and_what_was_said(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000809.000100"
    claude_api.enqueue(Reply([*code_run("python step1.py", stdout="one"), text("Step one worked")],
                             stream_error=OVERLOADED))
    said = await ask(bot, root, "run it", shows="overloaded")
    assert "Step one worked" in said and len(claude_api.requests) == 1
    claude_api.enqueue(Reply([text("Carrying on.")]))
    await follow_up(bot, root, "1700000809.000200", "continue", shows="Carrying on.")
    history = claude_api.requests[1]["messages"]
    kinds = [b["type"] for b in history[1]["content"]]
    assert kinds == ["server_tool_use", "bash_code_execution_tool_result", "text"]
    assert history[1]["content"][-1]["text"] == "Step one worked"


# --- refusals and history the API accepts -----------------------------------------------------


async def test_a_refusal_shows_its_explanation_and_is_not_replayed(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000810.000100"
    claude_api.enqueue(Reply([text("Let me look into it.")], stop_reason="refusal",
                             stop_details={"type": "refusal", "explanation": "This looks like malware."}))
    said = await ask(bot, root, "write ransomware", shows="declined")
    assert "This looks like malware." in said
    claude_api.enqueue(Reply([text("Happy to help with that.")]))
    said = await follow_up(bot, root, "1700000810.000200", "then plot sin(x)", shows="Happy to help")
    [user] = claude_api.requests[1]["messages"]  # the refused exchange is gone
    assert "sin(x)" in user["content"][-1]["text"]
    conversation = await bot.runtime.store.load_conversation(ThreadKey("T1", CHANNEL, root))
    assert "ransomware" not in str(conversation.history)


async def test_an_answer_cut_between_a_code_run_and_its_result_is_stored_as_the_api_accepts(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000811.000100"
    run, _result = code_run("python long.py")
    claude_api.enqueue(Reply([text("Starting the long job."), run], stop_reason="max_tokens"))
    await ask(bot, root, "run the long job", shows="length limit")
    claude_api.enqueue(Reply([text("Answered.")]))
    await follow_up(bot, root, "1700000811.000200", "go on", shows="Answered.")
    resent = claude_api.requests[1]["messages"][1]["content"]
    assert "server_tool_use" not in [block["type"] for block in resent]
