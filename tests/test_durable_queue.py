"""The durable queue in one process, on SQLite and on PostgreSQL: resets in order, turns cut
by a dying process, files owed across a crash, a database that fails and comes back."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import aiohttp
import pytest

from bot.config import Settings
from bot.turn import runner
from storage import ThreadKey
from tests.conftest import container_of, long_running_reply, run_sql, running_bot, said_by, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"


def refusing_inserts(url: str, table: str, why: str) -> tuple[str, str]:
    """SQL that makes the database refuse rows of `table` (`why` is its error), and SQL that mends it."""
    if url.startswith("sqlite:"):
        return (
            f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, '{why}'); END;",
            f"DROP TRIGGER refuse_{table};",
        )
    return (
        f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{why}';"
        f" END $$; CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_{table}();",
        f"DROP TRIGGER refuse_{table} ON {table};",
    )


def streaming_messages(slack: FakeSlack, root: str) -> list[dict]:
    return [m for m in slack.thread(CHANNEL, root) if m.get("streaming")]


async def test_a_reset_asked_during_a_turn_comes_before_messages_sent_after_it(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000901.000100"
    async with running_bot(settings_on_each_store, slack) as bot:
        claude_api.enqueue(Reply([*code_run("echo 1 > state"), text("first done")], delay=1.0))
        await bot.send_event(mention_event("first", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: len(claude_api.requests) == 1)
        response_url = slack.new_response_url()
        await bot.send_shortcut(
            {"ts": root, "text": "first", "user": "U1"}, channel_id=CHANNEL, user_id="U2", response_url=response_url
        )
        claude_api.enqueue(Reply([text("second done")]))
        await bot.send_event(message_event("second", channel=CHANNEL, user="U1", ts="1700000901.000300", thread_ts=root))
        await bot.wait_for(lambda: "second done" in thread_text(slack, CHANNEL, root))
        await bot.idle()

    first, second = claude_api.requests
    assert len(second["messages"]) == 1, "the message sent after the reset saw the old history"
    assert container_of(second) != container_of(first) or container_of(second) is None
    texts = slack.thread_texts(CHANNEL, root)
    [reset_at] = [i for i, t in enumerate(texts) if "Fresh start" in t and "<@U2>" in t]
    assert [i for i, t in enumerate(texts) if "first done" in t][0] < reset_at
    assert reset_at < [i for i, t in enumerate(texts) if "second done" in t][0]
    told = [r["text"] for r in slack.responses[response_url]]
    assert "busy" in told[0] and "Done" in told[-1]


async def test_a_turn_cut_by_a_dying_process_is_closed_and_answered_once(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000902.000100"
    async with running_bot(settings_on_each_store, slack) as bot:
        await bot.mention_and_wait(claude_api, long_running_reply("partial words"), "long one", root=root, shows="partial words")
        await bot.kill()
    assert streaming_messages(slack, root), "the reply was streaming when the process died"

    claude_api.enqueue(Reply([text("the full answer")]))
    async with running_bot(settings_on_each_store, slack) as restarted:
        await restarted.wait_for(lambda: "the full answer" in thread_text(slack, CHANNEL, root))
        await restarted.idle()
    assert streaming_messages(slack, root) == []
    texts = slack.thread_texts(CHANNEL, root)
    assert len(texts) == 2
    assert "partial words" in texts[0] and "interrupted" in texts[0]
    assert "the full answer" in texts[1]
    assert [r["messages"][-1]["content"][0]["text"] for r in claude_api.requests] == [said_by("U1", "long one")] * 2


async def test_files_of_an_answered_turn_are_delivered_after_a_crash_exactly_once(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000903.000100"
    first = claude_api.add_file("first.txt", b"one")
    second = claude_api.add_file("second.txt", b"two")
    async with running_bot(settings_on_each_store, slack) as bot:
        claude_api.enqueue(Reply([*code_run("make files", file_ids=[first, second]), text("made two files")]))
        # The first upload completes at Slack while the process dies waiting for the answer.
        slack.delay("files.completeUploadExternal", 1.0)
        await bot.send_event(mention_event("make files", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: len(slack.calls_to("files.completeUploadExternal")) == 1)
        await bot.kill()
    slack.delay("files.completeUploadExternal", 0)

    async with running_bot(settings_on_each_store, slack) as restarted:
        await restarted.wait_for(lambda: len(slack.uploads) == 2)
        await restarted.idle()
    assert sorted(u["title"] for u in slack.uploads) == ["first.txt", "second.txt"]
    assert len(claude_api.requests) == 1, "the model was asked again for an answered turn"
    assert thread_text(slack, CHANNEL, root).count("made two files") == 1
    assert streaming_messages(slack, root) == []


async def test_a_message_is_stored_before_slack_is_acknowledged(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    url = settings_on_each_store.database_url
    root = "1700000904.000100"
    event = mention_event("keep me", channel=CHANNEL, user="U1", ts=root)
    refuse, mend = refusing_inserts(url, "queue", "disk trouble")
    async with running_bot(settings_on_each_store, slack) as bot:
        await run_sql(url, refuse)
        assert await bot.send_event(event, event_id="EvStore") == 500  # so Slack sends it again
        await run_sql(url, mend)
        assert await bot.send_event(event, event_id="EvStore", retry_num=1) == 200
        await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    assert len(claude_api.requests) == 1


async def test_a_failed_commit_is_rolled_back_and_the_next_write_works(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    url = settings_on_each_store.database_url
    root = "1700000905.000100"
    if url.startswith("sqlite:"):
        breaker = (
            "CREATE TABLE IF NOT EXISTS breaker (item INTEGER REFERENCES queue (id) DEFERRABLE INITIALLY DEFERRED);"
            " CREATE TRIGGER break_commit AFTER INSERT ON queue BEGIN INSERT INTO breaker VALUES (-1); END;"
        )
        mend = "DROP TRIGGER break_commit;"
    else:
        breaker = (
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'commit refused'; END $$; CREATE CONSTRAINT TRIGGER break_commit AFTER INSERT ON"
            " queue DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit();"
        )
        mend = "DROP TRIGGER break_commit ON queue;"
    async with running_bot(settings_on_each_store, slack) as bot:
        await run_sql(url, breaker)
        event = mention_event("after a failed commit", channel=CHANNEL, user="U1", ts=root)
        assert await bot.send_event(event, event_id="EvCommit") == 500
        await run_sql(url, mend)
        assert await bot.send_event(event, event_id="EvCommit", retry_num=1) == 200
        await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    assert len(claude_api.requests) == 1


async def test_health_answers_503_while_the_database_refuses_writes_and_recovers(
    settings_on_each_store: Settings, slack: FakeSlack
) -> None:
    url = settings_on_each_store.database_url
    async with running_bot(settings_on_each_store, slack) as bot, aiohttp.ClientSession() as http:
        async with http.get(f"{bot.url}/healthz") as response:
            assert response.status == 200
        if url.startswith("sqlite:"):
            await run_sql(
                url,
                "CREATE TRIGGER readonly_i BEFORE INSERT ON health BEGIN SELECT RAISE(ABORT, 'read-only'); END;"
                " CREATE TRIGGER readonly_u BEFORE UPDATE ON health BEGIN SELECT RAISE(ABORT, 'read-only'); END;",
            )
        else:
            await run_sql(
                url,
                "CREATE FUNCTION ro() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'read-only';"
                " END $$; CREATE TRIGGER ro BEFORE INSERT OR UPDATE ON health FOR EACH ROW EXECUTE FUNCTION ro();",
            )
        async with http.get(f"{bot.url}/healthz") as response:
            assert response.status == 503
        await run_sql(url, "DROP TRIGGER readonly_i; DROP TRIGGER readonly_u;" if url.startswith("sqlite:") else "DROP TRIGGER ro ON health;")
        async with http.get(f"{bot.url}/healthz") as response:
            assert response.status == 200


async def test_the_reset_picker_remembers_threads_after_a_restart(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000906.000100"
    async with running_bot(settings_on_each_store, slack) as bot:
        await bot.send_event(mention_event("plot the sales data", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "ok" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    async with running_bot(settings_on_each_store, slack) as restarted:
        response_url = slack.new_response_url()
        await restarted.send_command("", channel_id=CHANNEL, user_id="U1", response_url=response_url)
        await restarted.wait_for(lambda: bool(slack.responses.get(response_url)))
    [picker] = slack.responses[response_url]
    assert "plot the sales data" in str(picker["blocks"])


async def test_a_message_that_keeps_killing_its_turn_is_given_up_with_a_note(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000907.000100"
    for attempt in range(3):
        async with running_bot(settings, slack) as bot:
            claude_api.enqueue(long_running_reply(f"attempt {attempt}"))
            if attempt == 0:
                await bot.send_event(mention_event("too much", channel=CHANNEL, user="U1", ts=root))
            await bot.wait_for(lambda: f"attempt {attempt}" in thread_text(slack, CHANNEL, root))
            await bot.kill()
    async with running_bot(settings, slack) as bot:
        await bot.wait_for(lambda: "stopped trying" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    assert len(claude_api.requests) == 3
    assert streaming_messages(slack, root) == []


async def test_a_graceful_shutdown_keeps_its_leases_while_turns_finish(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    """A deploy lets running turns finish for SHUTDOWN_GRACE_SECONDS, longer than a lease: the
    process keeps renewing, so no other process takes the thread over and answers it twice."""
    root = "1700000911.000100"
    settings = replace(settings_on_each_store, queue_lease_seconds=1.0, shutdown_grace_seconds=20.0)
    async with running_bot(settings, slack) as bot:
        claude_api.enqueue(Reply([text("a long answer " * 20), text("…its end")], chunk_delay=0.5))
        await bot.send_event(mention_event("long", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: len(claude_api.requests) == 1)
        store = bot.runtime.store
        shutdown = asyncio.create_task(bot.runtime.engine.shutdown(settings.shutdown_grace_seconds))
        await asyncio.sleep(2.5)  # well past the 1 s lease
        assert not shutdown.done()
        assert await store.claim_thread("another-process", 1.0) is None
        await shutdown
    assert "…its end" in thread_text(slack, CHANNEL, root) and len(claude_api.requests) == 1


async def test_a_renewal_that_hangs_stops_the_turn_before_its_lease_can_end(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000912.000100"
    async with running_bot(replace(settings, queue_lease_seconds=1.0), slack) as bot:
        claude_api.enqueue(long_running_reply("slow words"))
        await bot.send_event(mention_event("slow", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "slow words" in thread_text(slack, CHANNEL, root))
        engine = bot.runtime.engine
        assert engine._threads
        # The database stops answering this process (its one SQLite connection is held).
        async with bot.runtime.store.connector.transaction():
            # Stopped while the database is still silent: no waiting for a renewal that hangs.
            await bot.wait_for(lambda: not engine._threads, timeout=5)


async def test_an_answer_the_database_cannot_store_for_a_moment_is_stored_once_it_can(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    url = settings_on_each_store.database_url
    root = "1700000913.000100"
    refuse, allow = refusing_inserts(url, "history", "read-only")
    report = claude_api.add_file("report.csv", b"a,b\n")
    mended: list[asyncio.Task[None]] = []

    async def mend_later() -> None:
        await asyncio.sleep(1.5)
        await run_sql(url, allow)

    async def answer_while_the_database_refuses(body: dict) -> Reply:
        await run_sql(url, refuse)
        mended.append(asyncio.create_task(mend_later()))
        return Reply([*code_run("python report.py", file_ids=[report]), text("Report ready.")])

    async with running_bot(settings_on_each_store, slack) as bot:
        claude_api.responder = answer_while_the_database_refuses
        await bot.send_event(mention_event("make the report", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: len(slack.uploads) == 1, timeout=30)
        await bot.idle()
        claude_api.responder = lambda body: Reply([text("Next one.")])
        await bot.send_event(message_event("and next?", channel=CHANNEL, user="U1", ts="1700000913.000200", thread_ts=root))
        await bot.wait_for(lambda: "Next one." in thread_text(slack, CHANNEL, root))
        await bot.idle()
    said = thread_text(slack, CHANNEL, root)
    assert said.count("Report ready.") == 1 and "went wrong" not in said
    assert [upload["title"] for upload in slack.uploads] == ["report.csv"]
    assert len(claude_api.requests) == 2 and len(claude_api.requests[1]["messages"]) == 3  # the answer was stored
    await asyncio.gather(*mended)


async def test_an_answer_that_cannot_be_stored_at_all_leaves_its_message_to_run_again(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past every retry of the write, the message is not finished with a crash note (its answer
    would be lost): it stays open, and once the database takes writes again it is answered."""
    monkeypatch.setattr(runner, "PERSIST_RETRY_SECONDS", (0.05, 0.05))
    url = settings.database_url
    root = "1700000916.000100"
    refuse, allow = refusing_inserts(url, "history", "read-only")
    attempts: list[int] = []

    async def answer(body: dict) -> Reply:
        attempts.append(1)
        if len(attempts) == 1:
            await run_sql(url, refuse)
        else:
            await run_sql(url, allow)
        return Reply([text(f"Answer {len(attempts)}.")])

    async with running_bot(settings, slack) as bot:
        claude_api.responder = answer
        await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "Answer 2." in thread_text(slack, CHANNEL, root), timeout=30)
        await bot.idle()
        history = (await bot.runtime.store.load_conversation(ThreadKey("T1", CHANNEL, root))).history
    said = thread_text(slack, CHANNEL, root)
    assert "went wrong" not in said and "interrupted" in said  # the first reply says it runs again
    assert len(attempts) == 2 and history[-1]["content"][0]["text"] == "Answer 2."


async def test_a_claim_that_lands_during_a_renewal_is_not_taken_for_a_lost_lease(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000914.000100"
    async with running_bot(replace(settings, queue_lease_seconds=8.0), slack) as bot:
        engine, store = bot.runtime.engine, bot.runtime.store
        renew, in_window = store.renew_leases, asyncio.Event()

        async def renewal_that_a_claim_overtakes(leases: dict, lease_seconds: float) -> set:
            held = await renew(leases, lease_seconds)  # what it saw: the claim below is not in it
            if not in_window.is_set():
                in_window.set()
                for _ in range(40):  # the claim commits before this renewal's answer is read
                    if engine._threads:
                        break
                    await asyncio.sleep(0.02)
            return held

        store.renew_leases = renewal_that_a_claim_overtakes  # type: ignore[method-assign]
        await asyncio.wait_for(in_window.wait(), 10)
        claude_api.enqueue(Reply([text("one answer")], chunk_delay=0.3))
        await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "one answer" in thread_text(slack, CHANNEL, root))
        await bot.idle()
    assert len(claude_api.requests) == 1


async def test_a_turn_whose_lease_another_process_took_stores_nothing(
    settings_on_each_store: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    url = settings_on_each_store.database_url
    root = "1700000915.000100"
    async with running_bot(replace(settings_on_each_store, queue_lease_seconds=30.0), slack) as bot:
        claude_api.enqueue(Reply([text("first words " * 60), text("and the rest")], chunk_delay=0.3))
        await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: "first words" in thread_text(slack, CHANNEL, root))
        await run_sql(url, "UPDATE claims SET owner = 'another-process'")  # it lost the thread meanwhile
        await bot.wait_for(lambda: not bot.runtime.engine._threads)
        history = (await bot.runtime.store.load_conversation(ThreadKey("T1", CHANNEL, root))).history
    assert history == []  # the stale process changed nothing
    assert "went wrong" not in thread_text(slack, CHANNEL, root)


async def test_an_attempt_whose_lease_was_taken_meanwhile_is_given_back(
    settings: Settings, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    """A lease can end under a live process (the database away longer than the lease, a long
    pause): its attempt was cut short by no death, so it does not use up the message's tries."""
    root = "1700000917.000100"
    url = settings.database_url
    answers: list[int] = []

    async def answer(body: dict) -> Reply:
        answers.append(1)
        if len(answers) == 1:  # another process takes the thread while this answer is written
            await run_sql(url, "UPDATE claims SET owner = 'elsewhere', generation = generation + 1, lease_until = 9e9;")
        return Reply([text(f"Answer {len(answers)}.")])

    async with running_bot(settings, slack) as bot:
        claude_api.responder = answer
        await bot.send_event(mention_event("go", channel=CHANNEL, user="U1", ts=root))
        await bot.wait_for(lambda: len(answers) == 1 and not bot.runtime.engine._threads)
        await asyncio.sleep(0.2)
        await run_sql(url, "UPDATE claims SET owner = NULL, lease_until = NULL, admitted_user = NULL;")  # it died
        bot.runtime.engine.wake()
        await bot.wait_for(lambda: "Answer 2." in thread_text(slack, CHANNEL, root), timeout=20)
        await bot.idle()
    path = url[len("sqlite:///"):]
    with sqlite3.connect(path) as connection:
        [(attempts,)] = connection.execute("SELECT attempts FROM queue WHERE message_ts = ?", (root,)).fetchall()
    assert attempts == 1  # only the attempt that answered counts
