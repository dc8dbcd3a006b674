"""The fakes must satisfy the real slack_sdk and anthropic clients."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import anthropic
import httpx2
import pytest
import pytest_asyncio
from anthropic.types import (
    BashCodeExecutionToolResultBlock,
    ServerToolUseBlock,
    TextEditorCodeExecutionToolResultBlock,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes import (
    ErrorReply,
    FakeAnthropic,
    FakeSlack,
    Reply,
    block_action_body,
    code_error,
    code_run,
    command_body,
    event_body,
    file_edit,
    mention_event,
    message_event,
    rendered_text,
    shortcut_body,
    sign,
    text,
)
from tests.fakes.anthropic_web import web_search

CODE_TOOL = {"type": "code_execution_20250825", "name": "code_execution"}
MODEL = "claude-sonnet-5"  # not in the SDK's deprecated list (claude-sonnet-4-5 is)
THREAD = "1700000000.000001"


def web_client(fake: FakeSlack, token: str | None = None, **kwargs: object) -> AsyncWebClient:
    return AsyncWebClient(token=token or fake.bot_token, base_url=fake.base_url, **kwargs)


@pytest_asyncio.fixture
async def claude_client(claude_api: FakeAnthropic) -> AsyncIterator[Callable[..., anthropic.AsyncAnthropic]]:
    """A factory of SDK clients on the fake, closed at teardown (else httpx2 warns)."""
    made: list[anthropic.AsyncAnthropic] = []

    def make(api_key: str | None = None, **kwargs: Any) -> anthropic.AsyncAnthropic:
        made.append(anthropic.AsyncAnthropic(base_url=claude_api.base_url, api_key=api_key or claude_api.api_key, **kwargs))
        return made[-1]

    yield make
    for client in made:
        await client.close()


# ---------------------------------------------------------------------- Slack


@pytest.mark.asyncio
async def test_slack_messages_and_stream_round_trip(slack: FakeSlack) -> None:
    assert slack.base_url.startswith("http://127.0.0.1:") and slack.base_url.endswith("/api/")
    client = web_client(slack)

    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T1")

    blocks = [{"type": "markdown", "text": "**Working** on it"}]
    posted = await client.chat_postMessage(channel="C1", thread_ts=THREAD, text="fallback", blocks=blocks)
    ts = posted["ts"]
    assert posted["channel"] == "C1" and posted["message"]["text"] == "fallback"
    assert rendered_text(slack.message("C1", ts)) == "**Working** on it"
    await client.chat_update(channel="C1", ts=ts, text="edited", blocks=[])
    assert slack.message("C1", ts)["text"] == "edited"
    assert slack.rendered_text(slack.message("C1", ts)) == "edited"

    # Blocks sent as a JSON string in a form are recorded decoded.
    section = [{"type": "section", "text": {"type": "mrkdwn", "text": "from a form"}}]
    form = await client.api_call(
        "chat.postMessage", data={"channel": "C1", "thread_ts": THREAD, "blocks": json.dumps(section)}
    )
    assert slack.calls_to("chat.postMessage")[-1]["blocks"] == section
    assert rendered_text(slack.message("C1", form["ts"])) == "from a form"

    stream = await client.chat_stream(
        channel="C1", thread_ts=THREAD, recipient_team_id="T1", recipient_user_id="U1", buffer_size=8
    )
    await stream.append(markdown_text="Hello ")
    await stream.append(markdown_text="wor")  # flushes: 9 chars >= 8
    task = {"type": "task_update", "id": "run1", "title": "ls", "status": "in_progress"}
    await stream.append(chunks=[task])
    await stream.append(markdown_text="ld!")
    await stream.stop(chunks=[{**task, "status": "complete", "output": "a.txt"}])
    start = slack.calls_to("chat.startStream")[0]
    assert start["chunks"] == [{"type": "markdown_text", "text": "Hello wor"}]
    assert start["recipient_user_id"] == "U1"
    msg = slack.message("C1", stream.ts)
    assert msg["stream"] and not msg["streaming"]
    assert rendered_text(msg) == "Hello world!"
    assert slack.task_updates(msg)["run1"]["status"] == "complete"
    assert [m["ts"] for m in slack.thread("C1", THREAD)] == [ts, form["ts"], stream.ts]
    assert slack.thread_texts("C1", THREAD) == ["edited", "from a form", "Hello world!"]

    with pytest.raises(SlackApiError) as err:
        await client.chat_appendStream(channel="C1", ts=stream.ts, markdown_text="late")
    assert err.value.response["error"] == "message_not_in_streaming_state"
    with pytest.raises(SlackApiError) as err:
        await client.chat_appendStream(channel="C1", ts="1.2", markdown_text="x")
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err:
        await client.api_call("chat.startStream", json={"channel": "D1"})
    assert err.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as err:  # channels need a recipient
        await client.chat_startStream(channel="C1", thread_ts=THREAD, markdown_text="x")
    assert err.value.response["error"] == "invalid_arguments"

    replies = await client.conversations_replies(channel="C1", ts=THREAD)
    assert [m["text"] for m in replies["messages"]] == ["edited", "", "Hello world!"]
    assert replies["messages"][1]["blocks"] == section
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts=THREAD, status="is running code…")
    assert slack.calls_to("assistant.threads.setStatus")[0]["status"] == "is running code…"
    await client.reactions_add(channel="C1", timestamp=ts, name="eyes")
    assert slack.reactions == [("C1", ts, "eyes")]
    eph = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert eph["message_ts"] and slack.ephemerals[0]["text"] == "only you"
    await client.chat_delete(channel="C1", ts=ts)
    assert slack.message("C1", ts) is None
    assert (await client.users_info(user="U1"))["user"]["id"] == "U1"
    assert (await client.conversations_info(channel="D9"))["channel"]["is_im"] is True
    assert all(c.headers["Authorization"] == "Bearer xoxb-test" for c in slack.calls)


@pytest.mark.asyncio
async def test_files_upload_v2_lands_in_thread(slack: FakeSlack) -> None:
    client = web_client(slack)
    done = await client.files_upload_v2(
        channel="C1", thread_ts=THREAD, content=b"hello file", filename="a.txt", initial_comment="here"
    )
    assert done["file"]["id"] == "F0001"
    [upload] = slack.uploads
    assert upload["filename"] == "a.txt" and upload["title"] == "a.txt"
    assert (upload["channel"], upload["thread_ts"]) == ("C1", THREAD)
    assert upload["content"] == b"hello file" and upload["size"] == 10 == upload["length"]
    assert upload["sha256"] == hashlib.sha256(b"hello file").hexdigest()
    assert upload["initial_comment"] == "here"
    assert slack.calls_to("files.getUploadURLExternal")[0]["length"] == "10"
    assert slack.calls_to("files.completeUploadExternal")[0]["files"][0]["id"] == "F0001"
    share = slack.thread("C1", THREAD)[-1]
    assert share["files"][0]["id"] == "F0001" and rendered_text(share) == "here"
    assert (await client.files_info(file="F0001"))["file"]["name"] == "a.txt"

    # The hand-written path: raw POST of a body larger than the in-memory limit.
    size = 11 * 1024 * 1024
    url = await client.files_getUploadURLExternal(filename="big.bin", length=size)
    payload = bytes(range(256)) * (size // 256)
    async with aiohttp.ClientSession() as http:
        async with http.post(url["upload_url"], data=io.BytesIO(payload)) as resp:
            assert resp.status == 200 and await resp.text() == f"OK - {size}"
    await client.files_completeUploadExternal(files=[{"id": url["file_id"], "title": "Big"}], channel_id="D1")
    big = slack.uploads[-1]
    assert big["size"] == size and big["content"] is None and big["title"] == "Big"
    assert big["sha256"] == hashlib.sha256(payload).hexdigest() and big["thread_ts"] is None

    # A multipart body with a `file` field; a declared length that differs is still recorded.
    url = await client.files_getUploadURLExternal(filename="m.txt", length=999)
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("file", b"multipart bytes", filename="m.txt", content_type="text/plain")
    slack.fail("upload", "upstream broke", status=503)
    async with aiohttp.ClientSession() as http:
        async with http.post(url["upload_url"], data=b"x") as resp:
            assert resp.status == 503 and await resp.text() == "upstream broke"
        async with http.post(url["upload_url"], data=form) as resp:
            assert resp.status == 200 and await resp.text() == "OK - 15"
    await client.files_completeUploadExternal(files=[{"id": url["file_id"]}], channel_id="C1", thread_ts=THREAD)
    assert (slack.uploads[-1]["content"], slack.uploads[-1]["length"]) == (b"multipart bytes", 999)
    with pytest.raises(SlackApiError) as err:
        await client.files_completeUploadExternal(files=[{"id": "F9999"}], channel_id="C1")
    assert err.value.response["error"] == "file_not_found"


@pytest.mark.asyncio
async def test_replies_page_oldest_first_with_cursor_and_bounds(slack: FakeSlack) -> None:
    client = web_client(slack)
    root = "1700000050.000100"
    slack.add_message("C1", "root", user="U1", ts=root)
    for n in range(1, 8):
        slack.add_message("C1", f"reply {n}", user="U2", ts=f"1700000050.{n + 100:06d}", thread_ts=root)
    first = await client.conversations_replies(channel="C1", ts=root, limit=3)
    assert [m["text"] for m in first["messages"]] == ["root", "reply 1", "reply 2"] and first["has_more"]
    texts, cursor = [], None
    while True:
        page = await client.conversations_replies(channel="C1", ts=root, limit=3, cursor=cursor)
        texts += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            assert not page["has_more"]
            break
    assert texts == ["root"] + [f"reply {n}" for n in range(1, 8)]
    before = await client.conversations_replies(channel="C1", ts=root, latest="1700000050.000104")
    assert [m["text"] for m in before["messages"]] == ["root", "reply 1", "reply 2", "reply 3"]
    inclusive = await client.conversations_replies(channel="C1", ts=root, latest="1700000050.000104", inclusive=True)
    assert inclusive["messages"][-1]["text"] == "reply 4"
    after = await client.conversations_replies(channel="C1", ts=root, oldest="1700000050.000106")
    assert [m["text"] for m in after["messages"]] == ["root", "reply 7"]


@pytest.mark.asyncio
async def test_slack_ends_streams_server_side_and_refuses_editing_a_live_one(slack: FakeSlack) -> None:
    client = web_client(slack)
    stream = await client.chat_startStream(
        channel="C1", thread_ts=THREAD, recipient_team_id="T1", recipient_user_id="U1", markdown_text="Hi"
    )
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts=stream["ts"], text="edit")
    assert err.value.response["error"] == "streaming_state_conflict"
    slack.end_streams()
    with pytest.raises(SlackApiError) as err:
        await client.chat_appendStream(channel="C1", ts=stream["ts"], markdown_text=" there")
    assert err.value.response["error"] == "message_not_in_streaming_state"
    assert rendered_text(slack.message("C1", stream["ts"])) == "Hi"  # left as it was
    await client.chat_update(channel="C1", ts=stream["ts"], text="edited", blocks=[])
    assert rendered_text(slack.message("C1", stream["ts"])) == "edited"

    slack.stream_max_pause = 0.0  # any pause ends the next stream
    again = await client.chat_startStream(
        channel="C1", thread_ts=THREAD, recipient_team_id="T1", recipient_user_id="U1", markdown_text="a"
    )
    await asyncio.sleep(0.01)
    with pytest.raises(SlackApiError) as err:
        await client.chat_stopStream(channel="C1", ts=again["ts"])
    assert err.value.response["error"] == "message_not_in_streaming_state"


@pytest.mark.asyncio
async def test_slack_refuses_messages_and_stream_pieces_past_its_limits(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}

    async def refused(call: Any) -> str:
        with pytest.raises(SlackApiError) as error:
            await call
        return str(error.value.response["error"])

    assert await refused(client.chat_postMessage(channel="C1", text="x", blocks=[section] * 51)) == "msg_blocks_too_many"
    assert await refused(client.chat_postMessage(channel="C1", text="x" * 40_001)) == "msg_too_long"
    started = await client.chat_startStream(channel="C1", thread_ts=THREAD, recipient_team_id="T1",
                                            recipient_user_id="U1")
    ts = started["ts"]
    assert await refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="x" * 12_001)) == "msg_too_long"
    long_chunk = [{"type": "markdown_text", "text": "x" * 12_001}]
    assert await refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="", chunks=long_chunk)) == "invalid_chunks"
    bad_source = [{"type": "task_update", "id": "t1", "title": "run", "status": "complete",
                   "sources": [{"type": "url", "url": "ftp://x", "text": "x"}]}]
    assert await refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="", chunks=bad_source)) == "invalid_chunks"
    feedback = {"type": "context_actions", "elements": [{"type": "feedback_buttons", "action_id": "f",
                "positive_button": {"text": {"type": "plain_text", "text": "x" * 76}, "value": "g"},
                "negative_button": {"text": {"type": "plain_text", "text": "Bad"}, "value": "b"}}]}
    assert await refused(client.chat_stopStream(channel="C1", ts=ts, blocks=[feedback])) == "invalid_blocks"
    await client.chat_appendStream(channel="C1", ts=ts, markdown_text="x" * 12_000)  # at the limit: taken

    # The person stops the stream in Slack: it takes nothing more.
    slack.stop_by_user("C1", ts)
    assert await refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="more")) == "stopped_by_user"
    assert await refused(client.chat_stopStream(channel="C1", ts=ts)) == "stopped_by_user"

    # Slack's own stop control on a stream needs the `message_stream_stopped` subscription.
    slack.subscribed_events.remove("message_stream_stopped")
    assert await refused(client.chat_startStream(channel="C1", thread_ts=THREAD, recipient_team_id="T1",
                                                 recipient_user_id="U1", is_stoppable=True)) == (
        "not_subscribed_to_message_stream_stopped"
    )


async def test_suggested_prompts_under_agent_view_take_no_thread(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    prompts = [{"title": "a", "message": "b"}]
    await client.assistant_threads_setSuggestedPrompts(channel_id="D1", thread_ts=THREAD, prompts=prompts)
    assert slack.suggested_prompts == {}  # answered ok, and silently dropped
    await client.assistant_threads_setSuggestedPrompts(channel_id="D1", prompts=prompts)
    assert slack.suggested_prompts == {"D1": prompts}
    with pytest.raises(SlackApiError):
        await client.assistant_threads_setSuggestedPrompts(channel_id="D1", prompts=prompts * 5)


async def test_slack_rate_limits_now_and_then_with_retry_after(slack: FakeSlack) -> None:
    slack.rate_limit_every = 2
    bare = web_client(slack)
    await bare.auth_test()
    with pytest.raises(SlackApiError) as err:
        await bare.auth_test()
    assert err.value.response.status_code == 429 and err.value.response.headers["Retry-After"] == "0"
    patient = web_client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    for _ in range(3):
        assert (await patient.auth_test())["ok"]
    assert slack.rate_limited == ["auth.test"] * 3


@pytest.mark.asyncio
async def test_shared_files_are_served_with_their_own_type(slack: FakeSlack) -> None:
    page = slack.add_user_file("report.html", b"<html>report</html>", mimetype="text/html")
    auth = {"Authorization": f"Bearer {slack.bot_token}"}
    async with aiohttp.ClientSession() as http, http.get(page["url_private_download"], headers=auth) as resp:
        assert resp.content_type == "text/html" and await resp.read() == b"<html>report</html>"


@pytest.mark.asyncio
async def test_user_file_download_needs_the_bot_token(slack: FakeSlack) -> None:
    small = slack.add_user_file("notes.txt", b"some notes")
    big = slack.add_user_file("data.bin", size=5 * 1024 * 1024 + 7, mimetype="application/octet-stream")
    assert small["url_private_download"].endswith(f"/files-pri/T1-{small['id']}/download/notes.txt")
    assert (small["mode"], small["filetype"], small["size"]) == ("hosted", "txt", 10)
    auth = {"Authorization": f"Bearer {slack.bot_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(small["url_private_download"], headers=auth) as resp:
            assert resp.status == 200 and await resp.read() == b"some notes"
        digest, sizes = hashlib.sha256(), []
        async with http.get(big["url_private_download"], headers=auth) as resp:
            assert resp.content_type == "application/octet-stream"
            async for block in resp.content.iter_chunked(1 << 20):
                digest.update(block)
                sizes.append(len(block))
        assert sum(sizes) == big["size"] and digest.hexdigest() == slack.expected_sha256(big)
        async with http.get(big["url_private_download"]) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "Sign in" in await resp.text()
        slack.fail_downloads_of(small["id"])
        async with http.get(small["url_private_download"], headers=auth) as resp:
            assert resp.status == 500
    assert [d["authorized"] for d in slack.downloads] == [True, True, False, True]


@pytest.mark.asyncio
async def test_failure_injection_auth_and_rate_limit_retry(slack: FakeSlack) -> None:
    client = web_client(slack)
    slack.fail("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", text="x")
    assert err.value.response["error"] == "channel_not_found"
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]

    slack.fail("chat.update", "ratelimited", status=429, headers={"Retry-After": "0"})
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts="1.1", text="x")
    assert err.value.response.status_code == 429 and err.value.response.headers["Retry-After"] == "0"

    # The handler sleeps Retry-After + random() seconds, so keep this to one retry.
    retrying = web_client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    slack.fail("chat.postMessage", "ratelimited", times=1, status=429, headers={"Retry-After": "0"})
    before = len(slack.calls_to("chat.postMessage"))
    assert (await retrying.chat_postMessage(channel="C1", text="after a retry"))["ok"]
    assert len(slack.calls_to("chat.postMessage")) == before + 2
    assert slack.message("C1", slack.messages[-1]["ts"])["text"] == "after a retry"

    slack.fail("reactions.add", "internal_error", times=-1)
    for _ in range(3):
        with pytest.raises(SlackApiError):
            await client.reactions_add(channel="C1", timestamp="1.1", name="x")

    slack.delay("auth.test", 0.2)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.2

    for token, error in (("xoxb-wrong", "invalid_auth"), ("", "not_authed")):
        with pytest.raises(SlackApiError) as err:
            await AsyncWebClient(token=token or None, base_url=slack.base_url).auth_test()
        assert err.value.response["error"] == error
    with pytest.raises(SlackApiError) as err:
        await client.api_call("no.such.method")
    assert err.value.response["error"] == "unknown_method"


@pytest.mark.asyncio
async def test_response_url_records_posts(slack: FakeSlack) -> None:
    url = slack.new_response_url()
    assert url.endswith("/response/1") and "/api/" not in url
    resp = await AsyncWebhookClient(url).send(text="Thread reset", response_type="ephemeral")
    assert resp.status_code == 200 and resp.body == "ok"
    assert slack.responses[url] == [{"text": "Thread reset", "response_type": "ephemeral"}]


def test_request_builders_sign_and_parse() -> None:
    secret = "shhh"
    verifier = SignatureVerifier(secret)
    event = mention_event("run ls", channel="C1", user="U1", ts="1700000000.000002", thread_ts=THREAD)
    assert event["text"] == "<@UBOT> run ls" and event["event_ts"] == event["ts"]
    body = event_body(event)
    headers = sign(secret, body)
    assert headers["Content-Type"] == "application/json"
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + " ", headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body, sign(secret, body, timestamp=int(time.time()) - 3600))
    envelope = json.loads(body)
    assert envelope["type"] == "event_callback" and envelope["event"] == event
    assert envelope["authorizations"][0] == {
        "enterprise_id": None,
        "team_id": "T1",
        "user_id": "UBOT",
        "is_bot": True,
        "is_enterprise_install": False,
    }
    assert envelope["event_id"] != json.loads(event_body(event))["event_id"]
    assert json.loads(event_body(event, event_id="Ev1"))["event_id"] == "Ev1"

    files = [{"id": "F1", "name": "a.csv"}]
    dm = message_event("hi", channel="D1", user="U1", ts="1.2", channel_type="im", files=files)
    assert (dm["channel_type"], dm["subtype"], dm["files"]) == ("im", "file_share", files)
    own = message_event("mine", channel="C1", user="UBOT", ts="1.3", bot_id="BBOT")
    assert own["bot_id"] == "BBOT" and "subtype" not in own

    cmd = command_body(text="now", channel_id="C1", user_id="U1", response_url="http://x/response/1")
    assert sign(secret, cmd)["Content-Type"] == "application/x-www-form-urlencoded"
    assert verifier.is_valid_request(cmd, sign(secret, cmd))
    fields = {k: v[0] for k, v in parse_qs(cmd).items()}
    assert (fields["command"], fields["text"], fields["channel_id"]) == ("/reset", "now", "C1")
    assert fields["trigger_id"] and fields["response_url"] == "http://x/response/1"

    message = {"type": "message", "user": "U2", "ts": "1.5", "thread_ts": THREAD, "text": "x"}
    short = json.loads(
        parse_qs(
            shortcut_body("reset_thread", message=message, channel_id="C1", user_id="U1", response_url="http://x/r")
        )["payload"][0]
    )
    assert (short["type"], short["callback_id"], short["message_ts"]) == ("message_action", "reset_thread", "1.5")
    assert short["message"]["thread_ts"] == THREAD and short["channel"]["id"] == "C1"
    action = json.loads(
        parse_qs(block_action_body("confirm", "yes", channel_id="C1", user_id="U1", response_url="http://x/r"))[
            "payload"
        ][0]
    )
    assert action["type"] == "block_actions" and action["container"]["is_ephemeral"] is True
    assert action["actions"][0]["action_id"] == "confirm" and action["actions"][0]["value"] == "yes"


# ---------------------------------------------------------------------- Anthropic


@pytest.mark.asyncio
async def test_stream_with_code_blocks_and_container(claude_api: FakeAnthropic, claude_client: Any) -> None:
    client = claude_client()
    out = claude_api.add_file("plot.png", b"\x89PNG...", mime_type="image/png")
    claude_api.enqueue(
        Reply(
            [
                text("Let me look."),
                *code_run("ls -la", stdout="a.txt\n", file_ids=[out]),
                *file_edit("/tmp/x.py", "print(1)\n"),
                *code_error("sleep 999"),
                text("Done: **a.txt**"),
            ],
            chunk_delay=0.001,
        )
    )
    events, deltas, thoughts = [], [], []
    async with client.messages.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": "list files"}], tools=[CODE_TOOL]
    ) as stream:
        async for event in stream:
            events.append(event.type)
            if event.type == "text":
                deltas.append(event.text)
            elif event.type == "thinking":
                thoughts.append(event.thinking)
        final = await stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "message_delta" in events and "input_json" in events and "content_block_stop" in events
    # A 5.x model: the words before a tool call come back as a signed thinking block.
    assert "".join(thoughts) == "Let me look." and "signature" in events
    assert "".join(deltas) == "Done: **a.txt**" and len(deltas) > 1
    assert [b.type for b in final.content] == [
        "thinking",
        "server_tool_use",
        "bash_code_execution_tool_result",
        "server_tool_use",
        "text_editor_code_execution_tool_result",
        "server_tool_use",
        "bash_code_execution_tool_result",
        "text",
    ]
    run, result = final.content[1], final.content[2]
    assert final.content[0].type == "thinking" and final.content[0].signature
    assert isinstance(run, ServerToolUseBlock) and run.name == "bash_code_execution"
    assert run.input == {"command": "ls -la"}
    assert isinstance(result, BashCodeExecutionToolResultBlock) and result.tool_use_id == run.id
    assert result.content.type == "bash_code_execution_result" and result.content.stdout == "a.txt\n"
    assert [o.file_id for o in result.content.content] == [out]
    edit = final.content[4]
    assert isinstance(edit, TextEditorCodeExecutionToolResultBlock) and edit.content.is_file_update is False
    assert final.content[3].input["file_text"] == "print(1)\n"
    assert final.content[6].content.type == "bash_code_execution_tool_result_error"
    assert final.content[6].content.error_code == "execution_time_exceeded"
    assert final.stop_reason == "end_turn" and final.container is not None
    cid = final.container.id
    assert cid == "container_1" and set(claude_api.containers) == {cid}
    # `expires_at` is a rolling value (an hour here), not the container's 30-day lifetime.
    hours = (final.container.expires_at - datetime.now(UTC)).total_seconds() / 3600
    assert 0.9 < hours <= 1
    assert claude_api.requests[0]["stream"] is True and claude_api.requests[0]["tools"] == [CODE_TOOL]

    # Continue in the same container, non-streaming, with the container as an object.
    claude_api.enqueue(Reply([text("again")], stop_reason="pause_turn"))
    again = await client.messages.create(
        model=MODEL,
        max_tokens=64,
        container={"id": cid},
        tools=[CODE_TOOL],
        messages=[{"role": "user", "content": "more"}, final.to_param()],
    )
    assert again.container.id == cid and again.stop_reason == "pause_turn"
    assert claude_api.requests[1]["container"] == {"id": cid}
    assert claude_api.requests[1]["messages"][1]["content"][2]["type"] == "bash_code_execution_tool_result"
    # No code tool, no container: no container in the answer; the default responder says "ok".
    plain = await client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert plain.container is None and plain.content[0].text == "ok" and claude_api.pending == 0


@pytest.mark.asyncio
async def test_container_errors_auth_and_retries(claude_api: FakeAnthropic, claude_client: Any) -> None:
    client = claude_client(max_retries=2)
    ask = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}], "tools": [CODE_TOOL]}
    with pytest.raises(anthropic.BadRequestError) as err:
        await client.messages.create(**ask, container="container_nope")
    assert "container_nope" in err.value.message and err.value.type == "invalid_request_error"
    assert err.value.request_id and err.value.request_id.startswith("req_")
    cid = claude_api.new_container()
    claude_api.destroy(cid)
    with pytest.raises(anthropic.BadRequestError, match="expired"):
        await client.messages.create(**ask, container=cid)
    assert len(claude_api.requests) == 2  # 400s are not retried
    # Past its `expires_at` a container is only idle: naming it restores it, with a new expiry.
    idle = claude_api.new_container()
    claude_api.expire(idle, idle_seconds=7200)
    restored = await client.messages.create(**ask, container=idle)
    assert restored.container is not None and restored.container.id == idle
    assert restored.container.expires_at > datetime.now(UTC) and claude_api.restored == [idle]
    # A container past its 30-day lifetime is gone.
    old = claude_api.new_container()
    claude_api.container_created[old] -= 31 * 24 * 3600
    with pytest.raises(anthropic.BadRequestError, match="expired"):
        await client.messages.create(**ask, container=old)

    claude_api.enqueue(
        ErrorReply(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "10"}),
        ErrorReply(500, "api_error", "Internal server error", headers={"retry-after-ms": "10"}),
        Reply([text("finally")]),
    )
    ok = await client.messages.create(**ask)
    assert ok.content[0].text == "finally" and len(claude_api.requests) == 7
    claude_api.enqueue(*[ErrorReply(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "1"})] * 3)
    with pytest.raises(anthropic.OverloadedError):
        await client.messages.create(**ask)
    assert claude_api.pending == 0

    # Async responder and a mid-stream error event.
    async def responder(body: dict) -> Reply:
        return Reply([text("partial")], stream_error=ErrorReply(529, "overloaded_error", "Overloaded"))

    claude_api.responder = responder
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        async with client.messages.stream(**ask) as stream:
            await stream.get_final_message()

    # Auth: the SDK's Bearer header, a raw x-api-key header, and a wrong key.
    assert claude_api.request_headers[0]["Authorization"] == f"Bearer {claude_api.api_key}"
    claude_api.responder = lambda body: Reply([text("raw")])
    async with aiohttp.ClientSession() as http:
        url = f"{claude_api.base_url}/v1/messages"
        headers = {"x-api-key": claude_api.api_key, "anthropic-version": "2023-06-01"}
        async with http.post(url, json=ask, headers=headers) as resp:
            assert resp.status == 200 and (await resp.json())["content"] == [text("raw")]
            assert resp.headers["request-id"]
        async with http.post(url, json=ask, headers={"x-api-key": "nope"}) as resp:
            assert resp.status == 401 and resp.headers["request-id"]
            assert await resp.json() == {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                "request_id": resp.headers["request-id"],
            }
    with pytest.raises(anthropic.AuthenticationError):
        await claude_client(api_key="wrong").messages.create(**ask)


@pytest.mark.asyncio
async def test_concurrency_is_tracked_per_container(claude_api: FakeAnthropic, claude_client: Any) -> None:
    client = claude_client()
    cid = claude_api.new_container()
    claude_api.responder = lambda body: Reply([text("slow")], delay=0.2)
    ask = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}], "tools": [CODE_TOOL]}
    await asyncio.gather(
        client.messages.create(**ask, container=cid),
        client.messages.create(**ask, container=cid),
        client.messages.create(**ask),
    )
    assert claude_api.max_concurrent_per_container[cid] == 2
    assert claude_api.max_concurrent_per_container["container_2"] == 1
    assert claude_api.max_in_flight == 3


@pytest.mark.asyncio
async def test_files_metadata_download_and_upload(claude_api: FakeAnthropic, claude_client: Any) -> None:
    client = claude_client(max_retries=0)
    small = claude_api.add_file("out.csv", b"a,b\n1,2\n", mime_type="text/csv")
    big = claude_api.add_file("big.bin", size=3 * 1024 * 1024 + 5, mime_type="application/octet-stream")

    meta = await client.files.retrieve_metadata(small)
    assert (meta.id, meta.filename, meta.mime_type, meta.size_bytes) == (small, "out.csv", "text/csv", 8)
    assert meta.downloadable is True and meta.type == "file" and meta.created_at.tzinfo is not None
    assert await (await client.files.download(small)).read() == b"a,b\n1,2\n"

    digest, total = hashlib.sha256(), 0
    async with client.files.with_streaming_response.download(big) as resp:
        assert resp.headers["content-type"] == "application/octet-stream"
        async for block in resp.iter_bytes():
            digest.update(block)
            total += len(block)
    assert total == 3 * 1024 * 1024 + 5 and digest.hexdigest() == claude_api.expected_sha256(big)

    with pytest.raises(anthropic.NotFoundError):
        await client.files.retrieve_metadata("file_missing")
    claude_api.fail_download(small, status=500)
    with pytest.raises(anthropic.InternalServerError):
        await client.files.download(small)
    claude_api.fail_download(big, after_bytes=100_000)
    # A body cut short surfaces as httpx2's own error, not an anthropic.APIError.
    with pytest.raises(httpx2.RemoteProtocolError, match="received 100000 bytes"):
        async with client.files.with_streaming_response.download(big) as resp:
            async for _ in resp.iter_bytes():
                pass

    uploaded = await client.files.upload(file=("in.csv", io.BytesIO(b"x,y\n3,4\n"), "text/csv"))
    assert uploaded.filename == "in.csv" and uploaded.size_bytes == 8 and uploaded.mime_type == "text/csv"
    assert uploaded.downloadable is False
    [record] = claude_api.uploaded
    assert record["id"] == uploaded.id and record["content"] == b"x,y\n3,4\n"
    assert record["sha256"] == hashlib.sha256(b"x,y\n3,4\n").hexdigest()
    with pytest.raises(anthropic.BadRequestError) as err:
        await client.files.download(uploaded.id)
    assert err.value.error_code == "file_not_downloadable"

    # A container_upload of a known file is accepted; of an unknown file, refused.
    ask = {"model": MODEL, "max_tokens": 8, "tools": [CODE_TOOL]}
    block = {"type": "container_upload", "file_id": uploaded.id}
    await client.messages.create(**ask, messages=[{"role": "user", "content": [block]}])
    with pytest.raises(anthropic.BadRequestError, match="file_nope"):
        bad = {"type": "container_upload", "file_id": "file_nope"}
        await client.messages.create(**ask, messages=[{"role": "user", "content": [bad]}])


@pytest.mark.asyncio
async def test_signed_bodies_drive_a_real_bolt_app(slack: FakeSlack) -> None:
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.request.async_request import AsyncBoltRequest

    secret = "bolt-secret"
    app = AsyncApp(
        token=slack.bot_token,
        signing_secret=secret,
        client=web_client(slack),
        process_before_response=True,
    )
    seen: list[str] = []

    @app.event("app_mention")
    async def on_mention(event: dict, say) -> None:  # type: ignore[no-untyped-def]
        seen.append("mention")
        await say(text="pong", thread_ts=event.get("thread_ts") or event["ts"])

    @app.command("/reset")
    async def on_reset(ack, respond, command: dict) -> None:  # type: ignore[no-untyped-def]
        await ack()
        await respond(f"reset {command['text']}")

    @app.shortcut("reset_thread")
    async def on_shortcut(ack, shortcut: dict) -> None:  # type: ignore[no-untyped-def]
        await ack()
        seen.append(f"shortcut {shortcut['message']['thread_ts']}")

    @app.action("confirm")
    async def on_confirm(ack, action: dict) -> None:  # type: ignore[no-untyped-def]
        await ack()
        seen.append(f"action {action['value']}")

    async def deliver(body: str) -> int:
        resp = await app.async_dispatch(AsyncBoltRequest(body=body, headers=sign(secret, body)))
        return resp.status

    event = mention_event("ping", channel="C1", user="U1", ts="1700000000.000009")
    assert await deliver(event_body(event)) == 200
    assert rendered_text(slack.thread("C1", "1700000000.000009")[0]) == "pong"
    assert slack.calls_to("auth.test")  # Bolt authorized through the fake

    url = slack.new_response_url()
    assert await deliver(command_body(text="all", channel_id="C1", user_id="U1", response_url=url)) == 200
    assert slack.responses[url][0]["text"] == "reset all"
    message = {"type": "message", "user": "U2", "ts": "1.5", "thread_ts": THREAD, "text": "x"}
    body = shortcut_body("reset_thread", message=message, channel_id="C1", user_id="U1", response_url=url)
    assert await deliver(body) == 200
    body = block_action_body("confirm", "yes", channel_id="C1", user_id="U1", response_url=url)
    assert await deliver(body) == 200
    assert seen == ["mention", f"shortcut {THREAD}", "action yes"]
    bad = event_body(event)
    resp = await app.async_dispatch(AsyncBoltRequest(body=bad, headers=sign("wrong", bad)))
    assert resp.status == 401


@pytest.mark.asyncio
async def test_slack_names_the_granted_scopes_and_refuses_a_method_without_its_scope(slack: FakeSlack) -> None:
    client = web_client(slack)
    identity = await client.auth_test()
    assert set(identity.headers["x-oauth-scopes"].split(",")) == set(slack.scopes)
    slack.scopes.remove("reactions:write")
    with pytest.raises(SlackApiError) as refused:
        await client.reactions_add(channel="C1", timestamp=THREAD, name="eyes")
    assert refused.value.response["error"] == "missing_scope"
    assert refused.value.response["needed"] == "reactions:write"
    assert "reactions:write" not in refused.value.response.headers["x-oauth-scopes"]


@pytest.mark.asyncio
async def test_models_token_counts_and_the_files_list(claude_api: FakeAnthropic, claude_client: Any) -> None:
    client = claude_client()
    model = await client.models.retrieve(MODEL)
    assert model.id == MODEL and model.display_name
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("claude-unknown-9")

    ask: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    count = await client.messages.count_tokens(**ask, tools=[CODE_TOOL])
    assert count.input_tokens > 0
    with pytest.raises(anthropic.BadRequestError, match="code_execution_20990101"):
        await client.messages.count_tokens(**ask, tools=[{"type": "code_execution_20990101", "name": "code_execution"}])
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(**{**ask, "model": "claude-unknown-9"})
    with pytest.raises(anthropic.NotFoundError):  # a paid request naming an unknown model fails the same way
        await client.messages.create(**{**ask, "model": "claude-unknown-9"}, max_tokens=8)
    assert claude_api.requests and not claude_api.count_token_requests[-1].get("max_tokens")

    for name in ("a.txt", "b.txt", "c.txt"):
        await client.files.upload(file=(name, io.BytesIO(b"x"), "text/plain"))
    first = await client.files.list(limit=2)
    assert len(first.data) == 2 and first.has_next_page()
    names = [f.filename async for f in client.files.list(limit=2)]
    assert sorted(names) == ["a.txt", "b.txt", "c.txt"]
    with pytest.raises(anthropic.BadRequestError):
        await client.files.list(limit=0)


@pytest.mark.asyncio
async def test_the_fake_describes_models_and_refuses_what_current_models_refuse(
    claude_api: FakeAnthropic, claude_client: Any
) -> None:
    client = claude_client(max_retries=0)
    sonnet = await client.models.retrieve("claude-sonnet-5-5")
    assert (sonnet.max_input_tokens, sonnet.max_tokens, sonnet.lifecycle) == (1_000_000, 128_000, "active")
    assert sonnet.capabilities is not None and sonnet.capabilities.server_tools.code_execution.supported
    assert not sonnet.capabilities.thinking.types.disabled.supported
    haiku = await client.models.retrieve("claude-haiku-4-5")
    assert haiku.lifecycle == "deprecated" and haiku.retires_at is not None and haiku.max_input_tokens == 200_000

    ask: dict[str, Any] = {"model": "claude-sonnet-5-5", "max_tokens": 64, "messages": [{"role": "user", "content": "x"}]}
    for extra, complaint in [  # as raw fields: anthropic 2.x will not even send some of them
        ({"temperature": 0.2}, "temperature"),
        ({"thinking": {"type": "disabled"}}, "thinking.type"),
        ({"tool_choice": {"type": "any"}, "tools": [CODE_TOOL]}, "tool_choice"),
        ({"max_tokens": 200_000}, "maximum allowed number of output tokens"),
    ]:
        with pytest.raises(anthropic.BadRequestError, match=complaint):
            await client.messages.create(**ask, extra_body=extra)
    with pytest.raises(anthropic.NotFoundError, match="retired"):
        await client.messages.create(**{**ask, "model": "claude-sonnet-4-5"})
    claude_api.context_window = 50
    with pytest.raises(anthropic.BadRequestError, match="prompt is too long: .* > 50 maximum"):
        await client.messages.create(**{**ask, "messages": [{"role": "user", "content": "word " * 200}]})
    claude_api.context_window = None

    # A code run without its result, or a thinking block changed, is refused when sent back.
    claude_api.enqueue(Reply([text("Let me check."), *code_run("ls"), text("Checked.")]))
    answer = await client.messages.create(**ask, tools=[CODE_TOOL])
    thinking, run, result, _ = [block.model_dump(mode="json", exclude_none=True) for block in answer.content]
    assert thinking["type"] == "thinking" and thinking["signature"]
    turns = [ask["messages"][0], {"role": "assistant", "content": [thinking, run, result]}, {"role": "user", "content": "y"}]
    await client.messages.create(**{**ask, "messages": turns}, tools=[CODE_TOOL])  # as received: accepted
    for content, complaint in [
        ([thinking, run], "without a corresponding result"),
        ([{**thinking, "thinking": "Let me check!"}, run, result], "Invalid `signature`"),
    ]:
        broken = [turns[0], {"role": "assistant", "content": content}, turns[2]]
        with pytest.raises(anthropic.BadRequestError, match=complaint):
            await client.messages.create(**{**ask, "messages": broken}, tools=[CODE_TOOL])

    # A refused exchange sent again is refused again; without it the thread goes on.
    claude_api.enqueue(Reply([text("I won't.")], stop_reason="refusal", stop_details={"type": "refusal", "explanation": "No."}))
    refused = await client.messages.create(**{**ask, "messages": [{"role": "user", "content": "bad"}]})
    assert refused.stop_reason == "refusal" and refused.stop_details is not None and refused.stop_details.explanation == "No."
    replayed = [{"role": "user", "content": "bad"}, refused.to_param(), {"role": "user", "content": "ok then"}]
    assert (await client.messages.create(**{**ask, "messages": replayed})).stop_reason == "refusal"
    assert (await client.messages.create(**{**ask, "messages": [{"role": "user", "content": "ok then"}]})).stop_reason == "end_turn"


@pytest.mark.asyncio
async def test_each_code_run_returns_only_the_top_of_its_output_dir(claude_api: FakeAnthropic, claude_client: Any) -> None:
    client = claude_client()
    claude_api.enqueue(Reply([
        *file_edit("/work/notes.md", "# notes"),
        *code_run("python make.py", writes={"/tmp/a.png": b"a", "$OUTPUT_DIR/b.csv": b"b", "$OUTPUT_DIR/sub/c.csv": b"c"}),
        *code_run('cp /tmp/a.png /work/notes.md "$OUTPUT_DIR"/ && ls "$OUTPUT_DIR"'),
        text("Made them."),
    ]))
    answer = await client.messages.create(
        model="claude-sonnet-5-5", max_tokens=64, messages=[{"role": "user", "content": "make"}], tools=[CODE_TOOL]
    )
    runs = [block for block in answer.content if block.type == "bash_code_execution_tool_result"]
    names = [[claude_api.files[o.file_id].filename for o in run.content.content] for run in runs]
    assert names == [["b.csv"], ["a.png", "notes.md"]]  # nothing from /tmp or a subfolder, until copied


async def test_the_fake_refuses_skills_the_api_refuses_and_serves_the_skills_api(
    claude_api: FakeAnthropic, claude_client: Any
) -> None:
    client = claude_client()
    ask = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    xlsx = {"type": "anthropic", "skill_id": "xlsx", "version": "latest"}

    async def refused(**more: Any) -> str:
        with pytest.raises(anthropic.BadRequestError) as error:
            await client.messages.create(**ask, **more)
        return str(error.value)

    assert "require the code execution tool" in await refused(container={"skills": [xlsx]})
    assert "at most 20" in await refused(container={"skills": [xlsx] * 21}, tools=[CODE_TOOL])
    unknown = {"type": "anthropic", "skill_id": "xlsm", "version": "latest"}
    assert "not found" in await refused(container={"skills": [unknown]}, tools=[CODE_TOOL])
    both = {"type": "web_fetch_20260318", "name": "web_fetch", "allowed_domains": ["a.com"], "blocked_domains": ["b.com"]}
    assert "cannot both be set" in await refused(tools=[CODE_TOOL, both])

    # The Skills API: a folder with a valid SKILL.md becomes a skill; a new version pins anew.
    files = [("tidy/SKILL.md", b"---\nname: tidy\ndescription: Tidy tables.\n---\n"), ("tidy/run.py", b"print(1)")]
    skill = await client.skills.create(files=files, display_name="tidy")
    version = await client.skills.versions.create(skill.id, files=[*files[:1], ("tidy/run.py", b"print(2)")])
    assert version.id != skill.latest_version_id
    assert [s.id async for s in client.skills.list()] == [skill.id]
    pinned = {"type": "custom", "skill_id": skill.id, "version": version.id}
    await client.messages.create(**ask, container={"skills": [xlsx, pinned]}, tools=[CODE_TOOL])
    with pytest.raises(anthropic.BadRequestError, match="SKILL.md"):
        await client.skills.create(files=[("tidy/run.py", b"x")])
    await client.skills.delete(skill.id)
    assert "not found" in await refused(container={"skills": [pinned]}, tools=[CODE_TOOL])


async def test_search_results_must_come_back_sealed(claude_api: FakeAnthropic, claude_client: Any) -> None:
    client = claude_client()
    use, result = web_search("q", [("https://a.example.com", "A")])
    result["content"][0].pop("encrypted_content")
    messages = [{"role": "user", "content": "search"}, {"role": "assistant", "content": [use, result]},
                {"role": "user", "content": "and?"}]
    with pytest.raises(anthropic.BadRequestError, match="encrypted_content"):
        await client.messages.create(model=MODEL, max_tokens=64, messages=messages)


async def test_slack_opens_a_modal_once_per_fresh_trigger_and_holds_it_to_the_modal_limits(slack: FakeSlack) -> None:
    client = web_client(slack)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Channel settings"},
             "submit": {"type": "plain_text", "text": "Save"},
             "blocks": [{"type": "input", "block_id": "model", "label": {"type": "plain_text", "text": "Model"},
                         "element": {"type": "plain_text_input", "action_id": "model"}}]}
    fresh = f"{int(time.time())}.1.abc"
    opened = await client.views_open(trigger_id=fresh, view=modal)
    assert opened["view"]["id"] and slack.modals[-1]["title"]["text"] == "Channel settings"
    refusals = {
        "exchanged_trigger_id": (fresh, modal),
        "expired_trigger_id": (f"{int(time.time()) - 10}.1.abc", modal),
        "invalid_trigger_id": ("nonsense", modal),
        "invalid_arguments": (f"{int(time.time())}.2.abc", {**modal, "title": {"type": "plain_text", "text": "x" * 25}}),
    }
    for error, (trigger, view) in refusals.items():
        with pytest.raises(SlackApiError) as refused:
            await client.views_open(trigger_id=trigger, view=view)
        assert refused.value.response["error"] == error
    without_submit = {key: value for key, value in modal.items() if key != "submit"}
    with pytest.raises(SlackApiError) as refused:
        await client.views_open(trigger_id=f"{int(time.time())}.3.abc", view=without_submit)
    assert "submit is required" in refused.value.response["response_metadata"]["messages"][0]
    assert len(slack.modals) == 1


async def test_the_messages_api_refuses_an_effort_it_does_not_know(
    claude_api: FakeAnthropic, claude_client: Any
) -> None:
    client = claude_client()
    with pytest.raises(anthropic.BadRequestError) as refused:
        await client.messages.create(model="claude-sonnet-5-5", max_tokens=100, output_config={"effort": "xhigh"},
                                     messages=[{"role": "user", "content": "hi"}])
    assert "output_config.effort" in str(refused.value)
