"""A thread keeps its container: `expires_at` is not its end; only a container the API refuses
as gone is replaced."""

from __future__ import annotations

from tests.conftest import BotServer, container_of, thread_text
from tests.fakes import FakeAnthropic, FakeSlack
from tests.fakes.anthropic_api import ErrorReply, Reply, code_run, text
from tests.fakes.slack_api import mention_event, message_event

CHANNEL = "C1"
GONE_NOTE = "earlier in the thread are gone"


async def start_thread(bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic, root: str) -> str:
    """A first turn that creates the thread's container; returns its id."""
    claude_api.enqueue(Reply([*code_run("touch data"), text("stored data")]))
    await bot.send_event(mention_event("store data", channel=CHANNEL, user="U1", ts=root))
    await bot.wait_for(lambda: "stored data" in thread_text(slack, CHANNEL, root))
    await bot.idle()
    return next(iter(claude_api.containers))


async def follow_up(bot: BotServer, slack: FakeSlack, root: str, ts: str, expect: str) -> None:
    await bot.send_event(message_event("use data", channel=CHANNEL, user="U1", ts=ts, thread_ts=root))
    await bot.wait_for(lambda: expect in thread_text(slack, CHANNEL, root))
    await bot.idle()


async def test_a_container_past_its_expires_at_is_still_used_and_restored(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000801.000100"
    claude_api.container_ttl = 5.0  # the stored `expires_at` is only seconds away
    container = await start_thread(bot, slack, claude_api, root)
    claude_api.expire(container, idle_seconds=600)

    claude_api.enqueue(Reply([text("data is still there")]))
    await follow_up(bot, slack, root, "1700000801.000200", "data is still there")
    assert container_of(claude_api.requests[-1]) == container
    assert claude_api.restored == [container]
    assert GONE_NOTE not in thread_text(slack, CHANNEL, root)


async def test_a_container_the_api_refuses_as_gone_is_replaced_and_the_user_is_told(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000802.000100"
    old = await start_thread(bot, slack, claude_api, root)
    claude_api.destroy(old)

    claude_api.enqueue(Reply([text("fresh answer")]))
    await follow_up(bot, slack, root, "1700000802.000200", "fresh answer")
    assert GONE_NOTE in thread_text(slack, CHANNEL, root)
    assert container_of(claude_api.requests[-2]) == old
    assert container_of(claude_api.requests[-1]) is None
    new = [c for c in claude_api.containers if c != old]
    assert new, "a fresh container was created"

    # The next follow-up uses the new container without another warning.
    claude_api.enqueue(Reply([text("third answer")]))
    await follow_up(bot, slack, root, "1700000802.000300", "third answer")
    assert container_of(claude_api.requests[-1]) == new[-1]
    assert thread_text(slack, CHANNEL, root).count(GONE_NOTE) == 1


async def test_other_refusals_that_mention_a_container_keep_the_container(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000803.000100"
    container = await start_thread(bot, slack, claude_api, root)
    claude_api.enqueue(
        ErrorReply(400, "invalid_request_error", "messages.1.content.1.container_upload: file type is not supported")
    )
    await follow_up(bot, slack, root, "1700000803.000200", "file type is not supported")
    said = thread_text(slack, CHANNEL, root)
    assert GONE_NOTE not in said and "expired" not in said
    assert len(claude_api.requests) == 2  # no retry in a fresh container

    claude_api.enqueue(Reply([text("same box")]))
    await follow_up(bot, slack, root, "1700000803.000300", "same box")
    assert container_of(claude_api.requests[-1]) == container


async def test_a_refusal_about_the_container_that_does_not_say_it_is_gone_keeps_it(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    """The error's type (`invalid_request_error`) says nothing about the container itself."""
    root = "1700000808.000100"
    container = await start_thread(bot, slack, claude_api, root)
    claude_api.enqueue(ErrorReply(400, "invalid_request_error", "This container cannot take more files in one request"))
    await follow_up(bot, slack, root, "1700000808.000200", "cannot take more files")
    assert GONE_NOTE not in thread_text(slack, CHANNEL, root)
    assert len(claude_api.requests) == 2  # no retry in a fresh container

    claude_api.enqueue(Reply([text("same box")]))
    await follow_up(bot, slack, root, "1700000808.000300", "same box")
    assert container_of(claude_api.requests[-1]) == container


async def test_an_answer_without_a_container_keeps_the_stored_one(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000804.000100"
    container = await start_thread(bot, slack, claude_api, root)
    claude_api.enqueue(Reply([text("no container field")], send_container=False))
    await follow_up(bot, slack, root, "1700000804.000200", "no container field")

    claude_api.enqueue(Reply([text("still the same box")]))
    await follow_up(bot, slack, root, "1700000804.000300", "still the same box")
    assert container_of(claude_api.requests[-1]) == container


async def test_a_long_idle_container_failing_with_server_errors_is_retried_once_fresh(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000805.000100"
    claude_api.container_ttl = -2 * 3600  # the answer's `expires_at` is two hours ago: long idle
    old = await start_thread(bot, slack, claude_api, root)
    claude_api.container_ttl = 3600
    broken = ErrorReply(500, "api_error", "Internal server error", headers={"retry-after-ms": "1"})
    claude_api.enqueue(broken, broken, broken, Reply([text("ran fresh")]))  # the SDK retries twice

    await follow_up(bot, slack, root, "1700000805.000200", "ran fresh")
    assert [container_of(r) for r in claude_api.requests[1:]] == [old, old, old, None]
    assert GONE_NOTE in thread_text(slack, CHANNEL, root)


async def test_a_recently_used_container_failing_with_server_errors_is_kept(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000806.000100"
    container = await start_thread(bot, slack, claude_api, root)
    broken = ErrorReply(500, "api_error", "Internal server error", headers={"retry-after-ms": "1"})
    claude_api.enqueue(broken, broken, broken)
    await follow_up(bot, slack, root, "1700000806.000200", "having trouble")
    assert len(claude_api.requests) == 4
    assert GONE_NOTE not in thread_text(slack, CHANNEL, root)
    claude_api.enqueue(Reply([text("back")]))
    await follow_up(bot, slack, root, "1700000806.000300", "back")
    assert container_of(claude_api.requests[-1]) == container


async def test_a_deleted_file_in_the_history_is_dropped_with_a_note(
    bot: BotServer, slack: FakeSlack, claude_api: FakeAnthropic
) -> None:
    root = "1700000807.000100"
    shared = slack.add_user_file("data.csv", b"a,b\n1,2\n", mimetype="text/csv")
    await bot.send_event(mention_event("keep this", channel=CHANNEL, user="U1", ts=root, files=[shared]))
    await bot.wait_for(lambda: len(claude_api.requests) == 1)
    await bot.idle()
    [uploaded] = claude_api.uploaded
    del claude_api.files[uploaded["id"]]  # deleted from the Files API since

    claude_api.enqueue(Reply([text("carrying on")]))
    await follow_up(bot, slack, root, "1700000807.000200", "carrying on")
    last = claude_api.requests[-1]
    assert uploaded["id"] not in [b.get("file_id") for m in last["messages"] for b in m["content"]]
    assert "no longer exists" in str(last["messages"][0]["content"])
    assert ":warning:" not in thread_text(slack, CHANNEL, root)

    # The stored history no longer names the file: the next turn is one request, not a refused one first.
    sent = len(claude_api.requests)
    claude_api.enqueue(Reply([text("and on")]))
    await follow_up(bot, slack, root, "1700000807.000300", "and on")
    assert len(claude_api.requests) == sent + 1
    assert "no longer exists" in str(claude_api.requests[-1]["messages"][0]["content"])
