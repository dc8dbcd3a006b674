"""The bot's reply in a thread, live while Claude works.

Preferred: Slack's streaming surface (`chat.startStream`/`appendStream`/`stopStream`) with a
`task_update` step per code run. Where streaming is off or Slack refuses it, the same state is
rendered into an ordinary message (a `markdown` block) that is updated at a polite pace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.models.messages.chunk import TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from .tasks import stop_tasks
from .slack_text import MARKDOWN_BLOCK_LIMIT, code_span, defuse_mentions, notification_text, split_markdown

logger = logging.getLogger(__name__)

# chat.update is rate limited per message; one edit a second keeps well inside it.
UPDATE_INTERVAL_SECONDS = 1.0
# Markdown streamed in one Slack message before the reply moves on to the next message.
STREAM_MESSAGE_LIMIT = MARKDOWN_BLOCK_LIMIT
STREAM_BUFFER_CHARS = 400
# A finished step waits this long to travel with the text or step that follows it.
STEP_FLUSH_SECONDS = 0.5
WORKING_TEXT = "_Working on it…_"
STOP_ACTION_ID = "stop_turn"
# A streamed message cannot show a button while it streams: a turn still running after this
# long gets a small message with a Stop button under its reply, deleted when the turn ends.
STOP_OFFER_SECONDS = 3.0
SLACK_ERRORS = (SlackApiError, SlackRequestError)


@dataclass(frozen=True)
class ReplyTarget:
    """Where a reply goes, and who it is for (streaming in channels needs the recipient)."""

    channel_id: str
    thread_ts: str | None
    team_id: str
    user_id: str


@dataclass
class Step:
    id: str
    title: str
    status: str = "in_progress"
    output: str = ""

    def chunk(self) -> TaskUpdateChunk:
        return TaskUpdateChunk(
            id=self.id,
            title=defuse_mentions(self.title),
            status=self.status,
            output=defuse_mentions(self.output) or None,
        )

    def line(self) -> str:
        icon = {"in_progress": "⏳", "complete": "✅", "error": "⚠️"}.get(self.status, "•")
        return f"{icon} {code_span(self.title)}"


@dataclass
class ReplyState:
    text: str = ""
    steps: dict[str, Step] = field(default_factory=dict)
    summary: str = ""


class Renderer(Protocol):
    @property
    def message_ts(self) -> str | None:
        """The reply message being written now, once Slack has it."""

    async def start(self, state: ReplyState) -> None: ...

    async def text(self, state: ReplyState, delta: str) -> None: ...

    async def step(self, state: ReplyState, step: Step) -> None: ...

    async def finish(self, state: ReplyState, footer: str) -> None: ...


class Reply:
    """Receives a turn's progress (it is a `TurnObserver`) and shows it in the thread."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        *,
        streaming: bool,
        on_message: Callable[[str], Awaitable[None]] | None = None,
        stop_value: str | None = None,
    ) -> None:
        """`stop_value`: the value of the reply's Stop button (none without it)."""
        self.client = client
        self.target = target
        self.state = ReplyState()
        # Told each reply message's ts as soon as it exists, so a crash never leaves it open.
        self._on_message = on_message
        self._reported_ts: str | None = None
        self._renderer: Renderer = (
            StreamRenderer(client, target, stop_value=stop_value)
            if streaming and target.thread_ts
            else MessageRenderer(client, target, stop_value=stop_value)
        )
        self._opening: asyncio.Task[None] | None = None
        self._status: str | None = None
        self._stop_value = stop_value
        self._stop_offer: asyncio.Task[None] | None = None
        self._stop_offer_ts: str | None = None
        self._stop_offer_posting = False

    def open(self) -> None:
        """Show the status and the reply without waiting for Slack: the model request goes out
        meanwhile, and anything it says before the reply is open waits for it."""
        if self._opening is None:
            self._opening = asyncio.create_task(self._open())
            if self._stop_value and isinstance(self._renderer, StreamRenderer):
                self._stop_offer = asyncio.create_task(self._offer_stop_later(self._stop_value))

    async def _open(self) -> None:
        await asyncio.gather(
            self.set_status("is thinking…"), self._render(lambda renderer: renderer.start(self.state), opened=True)
        )

    async def _opened(self) -> None:
        self.open()
        assert self._opening is not None
        await self._opening

    async def on_text(self, delta: str) -> None:
        self.state.text += delta
        await self._render(lambda renderer: renderer.text(self.state, delta))

    async def on_tool_start(self, tool_id: str, title: str) -> None:
        step = self.state.steps[tool_id] = Step(tool_id, title)
        await self._show(step)
        await self.set_status("is running code…")

    async def on_tool_end(self, tool_id: str, ok: bool, excerpt: str) -> None:
        # No status change here: the next step or the text that follows shows what happens.
        step = self.state.steps.setdefault(tool_id, Step(tool_id, "code"))
        step.status, step.output = ("complete" if ok else "error"), excerpt
        await self._show(step)

    async def finish(self, notes: list[str] | None = None, *, failed: bool = False, usage: str = "") -> None:
        """End the reply; `notes` (errors, warnings) are appended after the answer, `usage`
        to the closing status line."""
        for step in self.state.steps.values():
            if step.status == "in_progress":  # the turn ended before this run reported back
                step.status, step.output = "error", "no result"
                await self._show(step)
        self.state.summary = " · ".join(part for part in (final_status(self.state, failed), usage) if part)
        footer = "\n\n".join(notes or [])
        if not self.state.text.strip() and not footer:
            footer = "_(no text in the answer)_"
        await self.withdraw_stop_button()
        await self._render(lambda renderer: renderer.finish(self.state, footer))

    async def _offer_stop_later(self, value: str) -> None:
        await asyncio.sleep(STOP_OFFER_SECONDS)  # a fallback to message edits withdraws it before
        self._stop_offer_posting = True
        try:
            response = await self.client.chat_postMessage(
                channel=self.target.channel_id,
                thread_ts=self.target.thread_ts,
                text="Working on it… (Stop ends this answer)",
                blocks=[_context(WORKING_TEXT), stop_button(value)],
            )
            self._stop_offer_ts = response["ts"]
        except SLACK_ERRORS as error:
            logger.debug("could not offer a Stop button: %s", error)

    async def withdraw_stop_button(self) -> None:
        """The turn has ended (or shows its button itself now): the separate Stop button goes."""
        offer, self._stop_offer = self._stop_offer, None
        if offer is not None:
            if self._stop_offer_posting:
                await asyncio.wait({offer})  # never leave a message we could not delete
            else:
                await stop_tasks([offer])
        ts, self._stop_offer_ts = self._stop_offer_ts, None
        if ts is not None:
            try:
                await self.client.chat_delete(channel=self.target.channel_id, ts=ts)
            except SLACK_ERRORS as error:
                logger.warning("could not remove the Stop button %s: %s", ts, error)

    async def _show(self, step: Step) -> None:
        await self._render(lambda renderer: renderer.step(self.state, step))

    async def set_status(self, status: str) -> None:
        """The thread's status line, set only when it changes; best effort (it exists only
        where Slack allows it)."""
        if not self.target.thread_ts or status == self._status:
            return
        self._status = status
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=self.target.channel_id, thread_ts=self.target.thread_ts, status=status
            )
        except SLACK_ERRORS as error:
            logger.debug("setStatus unavailable: %s", error)

    async def _render(self, action: Callable[[Renderer], Awaitable[None]], *, opened: bool = False) -> None:
        if not opened:
            await self._opened()
        try:
            await action(self._renderer)
        except SLACK_ERRORS as error:
            if not isinstance(self._renderer, StreamRenderer):
                raise
            logger.warning("streaming unavailable (%s); falling back to message updates", error)
            self._renderer = await self._renderer.fallback()
            await self.withdraw_stop_button()  # the message shows its own from now on
            await self._renderer.start(self.state)
            await action(self._renderer)
        finally:
            await self._report_message()

    async def _report_message(self) -> None:
        ts = self._renderer.message_ts
        if ts and ts != self._reported_ts and self._on_message is not None:
            self._reported_ts = ts
            await self._on_message(ts)


class StreamRenderer:
    """Streams Markdown and steps into the reply with Slack's streaming methods."""

    def __init__(self, client: AsyncWebClient, target: ReplyTarget, *, stop_value: str | None = None) -> None:
        self.client = client
        self.target = target
        self.stop_value = stop_value
        self._stream: AsyncChatStream | None = None
        self._streamed_chars = 0
        self._full = False
        # Where the current message's text starts in the whole answer.
        self._message_start = 0
        # One Slack call at a time on the stream (the delayed step flush runs on its own).
        self._lock = asyncio.Lock()
        self._ended: dict[str, Step] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def _open(self) -> AsyncChatStream:
        stream = await self.client.chat_stream(
            channel=self.target.channel_id,
            thread_ts=self.target.thread_ts or "",
            recipient_team_id=self.target.team_id,
            recipient_user_id=self.target.user_id,
            task_display_mode="timeline",
            buffer_size=STREAM_BUFFER_CHARS,
        )
        self._message_start += self._streamed_chars
        self._streamed_chars, self._full = 0, False
        return stream

    @property
    def message_ts(self) -> str | None:
        return self._stream.ts if self._stream is not None else None

    async def fallback(self) -> MessageRenderer:
        """Carry on by editing the current message. Slack refuses `chat.update` on a message
        that is still streaming, so a stream it still holds open is stopped first."""
        ts = self._stream.ts if self._stream is not None else None
        if self._flusher is not None:
            self._flusher.cancel()
        if self._stream is not None and ts is not None:
            try:
                await self.client.chat_stopStream(channel=self.target.channel_id, ts=ts)
            except SLACK_ERRORS as error:  # typically: Slack had already ended it
                logger.debug("stream %s already ended: %s", ts, error)
        return MessageRenderer(
            self.client, self.target, ts=ts, text_offset=self._message_start, stop_value=self.stop_value
        )

    async def start(self, state: ReplyState) -> None:
        self._stream = await self._open()
        # Starting right away shows the reply at once and tells us whether streaming works here.
        await self._stream.append(chunks=[])

    async def text(self, state: ReplyState, delta: str) -> None:
        async with self._lock:
            while delta:
                stream = await self._current()
                piece, self._full = _next_piece(delta, self._streamed_chars)
                first = self._streamed_chars == 0
                self._streamed_chars += len(piece)
                # The first words go out at once (`chunks` flushes), with any finished step;
                # later text is buffered.
                ended = self._take_ended()
                await stream.append(markdown_text=defuse_mentions(piece), chunks=ended if first or ended else None)
                delta = delta[len(piece) :]

    async def step(self, state: ReplyState, step: Step) -> None:
        if step.status != "in_progress":
            # Finished: it rides along with what comes next, or goes alone after a moment.
            self._ended[step.id] = step
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_ended_later())
            return
        async with self._lock:
            stream = await self._current()
            await stream.append(chunks=[*self._take_ended(), step.chunk()])

    async def finish(self, state: ReplyState, footer: str) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        async with self._lock:
            stream = await self._current()
            text = f"\n\n{footer}" if footer and state.text.strip() else footer
            await stream.stop(
                markdown_text=defuse_mentions(text) or None,
                chunks=self._take_ended() or None,
                blocks=[_context(state.summary)] if state.summary else None,
            )

    def _take_ended(self) -> list[TaskUpdateChunk]:
        chunks = [step.chunk() for step in self._ended.values()]
        self._ended.clear()
        return chunks

    async def _flush_ended_later(self) -> None:
        await asyncio.sleep(STEP_FLUSH_SECONDS)
        async with self._lock:
            ended = self._take_ended()
            if ended and self._stream is not None:
                try:
                    await self._stream.append(chunks=ended)
                except SLACK_ERRORS as error:  # the next call falls back and shows every step
                    logger.warning("step update failed: %s", error)

    async def _current(self) -> AsyncChatStream:
        """The open stream, moving on to a new message once this one is full."""
        if self._stream is None:
            self._stream = await self._open()
        elif self._full:
            await self._stream.stop(chunks=self._take_ended() or None)
            self._stream = await self._open()
        return self._stream


def _next_piece(text: str, streamed: int) -> tuple[str, bool]:
    """How much of `text` goes into the current message, and whether that message is then full.

    Past a soft limit the message ends at the next line break, so a new message starts at a
    line; only a very long line is cut, at a space where possible.
    """
    soft, hard = STREAM_MESSAGE_LIMIT - 2000, STREAM_MESSAGE_LIMIT
    if streamed + len(text) <= soft:
        return text, False
    line_end = text.find("\n", max(0, soft - streamed))
    if line_end != -1 and streamed + line_end + 1 <= hard:
        return text[: line_end + 1], True
    if streamed + len(text) <= hard:
        return text, False
    room = max(hard - streamed, 1)
    space = text.rfind(" ", 0, room)
    return text[: space + 1 if space > 0 else room], True


class MessageRenderer:
    """Posts one message and edits it as the turn goes; long answers continue in new messages."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        *,
        ts: str | None = None,
        text_offset: int = 0,
        stop_value: str | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.stop_value = stop_value
        self._ts = ts
        self._text_offset = text_offset
        self._last_update = 0.0
        self._pending: asyncio.Task[None] | None = None
        self._text_shown = False

    @property
    def message_ts(self) -> str | None:
        return self._ts

    async def start(self, state: ReplyState) -> None:
        if self._ts is not None:
            return
        response = await self.client.chat_postMessage(
            channel=self.target.channel_id,
            thread_ts=self.target.thread_ts,
            text=WORKING_TEXT,
            blocks=self._blocks(state, WORKING_TEXT, final=False),
        )
        self._ts = response["ts"]
        self._last_update = time.monotonic()

    async def text(self, state: ReplyState, delta: str) -> None:
        if not self._text_shown:  # the first words go out at once, later ones at a polite pace
            self._text_shown, self._last_update = True, 0.0
        self._schedule(state)

    async def step(self, state: ReplyState, step: Step) -> None:
        self._schedule(state)

    async def finish(self, state: ReplyState, footer: str) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        body = "\n\n".join(part for part in (state.text[self._text_offset :].strip(), footer) if part)
        pieces = split_markdown(body)
        await self._update(state, pieces[0], final=True)
        await post_markdown(self.client, self.target, [defuse_mentions(piece) for piece in pieces[1:]])

    def _schedule(self, state: ReplyState) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._delayed_update(state))

    async def _delayed_update(self, state: ReplyState) -> None:
        wait = self._last_update + UPDATE_INTERVAL_SECONDS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        text = state.text[self._text_offset :].strip()
        if len(text) > MARKDOWN_BLOCK_LIMIT - 100:
            text = "…" + text[-(MARKDOWN_BLOCK_LIMIT - 100) :]
        try:
            await self._update(state, f"{text}\n\n{WORKING_TEXT}" if text else WORKING_TEXT, final=False)
        except SLACK_ERRORS as error:
            logger.warning("progress update failed: %s", error)

    async def _update(self, state: ReplyState, text: str, *, final: bool) -> None:
        if self._ts is None:
            await self.start(state)
        self._last_update = time.monotonic()
        await self.client.chat_update(
            channel=self.target.channel_id,
            ts=self._ts or "",
            text=notification_text(text),
            blocks=self._blocks(state, text, final=final),
        )

    def _blocks(self, state: ReplyState, text: str, *, final: bool) -> list[dict[str, object]]:
        blocks: list[dict[str, object]] = []
        if state.steps:
            blocks.append(_context("\n".join(step.line() for step in state.steps.values())))
        blocks.append({"type": "markdown", "text": defuse_mentions(text)})
        if state.summary:
            blocks.append(_context(state.summary))
        if self.stop_value and not final:
            blocks.append(stop_button(self.stop_value))
        return blocks


def stop_button(value: str) -> dict[str, object]:
    """The button that stops the running turn `value` names."""
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "Stop"},
                "style": "danger",
                "action_id": STOP_ACTION_ID,
                "value": value,
            }
        ],
    }


def shows_stop_button(message: dict[str, object], value: str) -> bool:
    """Whether a message (as the Web API returns it) carries the Stop button with `value`."""
    blocks = message.get("blocks")
    return isinstance(blocks, list) and any(
        isinstance(block, dict) and block.get("type") == "actions" and any(
            isinstance(element, dict) and element.get("action_id") == STOP_ACTION_ID and element.get("value") == value
            for element in block.get("elements") or []
        )
        for block in blocks
    )


def _context(text: str) -> dict[str, object]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:2900]}]}


def final_status(state: ReplyState, failed: bool) -> str:
    """The line that closes a reply: how the turn ended and how much code ran."""
    runs = len(state.steps)
    errors = sum(step.status == "error" for step in state.steps.values())
    ran = f"{runs} code run{'s' if runs != 1 else ''}" + (f", {errors} with errors" if errors else "")
    if failed:
        return f"⚠️ Stopped early · {ran}" if runs else "⚠️ Stopped early"
    return f"✅ Done · {ran}" if runs else ""


async def close_reply(target: ReplyTarget, client: AsyncWebClient, ts: str, markdown: str, *, replace_text: bool) -> None:
    """Close a reply message an interrupted turn left behind: stop its stream, then either add
    `markdown` to what it shows or (`replace_text`) show `markdown` instead. Best effort."""
    markdown = defuse_mentions(markdown)
    try:
        await client.chat_stopStream(channel=target.channel_id, ts=ts, markdown_text=None if replace_text else f"\n\n{markdown}")
        if not replace_text:
            return
    except SLACK_ERRORS as error:
        logger.debug("stopStream on %s: %s", ts, error)  # not streaming (any more), or not a stream
    pieces = split_markdown(markdown)
    try:
        await client.chat_update(
            channel=target.channel_id, ts=ts, text=notification_text(pieces[0]), blocks=[{"type": "markdown", "text": pieces[0]}]
        )
    except SLACK_ERRORS as error:
        logger.warning("could not close the interrupted reply %s: %s", ts, error)
        return
    await post_markdown(client, target, pieces[1:])


async def post_markdown(client: AsyncWebClient, target: ReplyTarget, pieces: list[str]) -> None:
    """The rest of a long answer, one message a piece after the reply."""
    for piece in pieces:
        await client.chat_postMessage(
            channel=target.channel_id, thread_ts=target.thread_ts, text=notification_text(piece),
            blocks=[{"type": "markdown", "text": piece}],
        )


async def tell_requester(response_url: str, text: str, replace_original: bool) -> None:
    """An ephemeral answer through a command's, shortcut's or button's `response_url`."""
    try:
        response = await AsyncWebhookClient(response_url).send(
            text=text, response_type="ephemeral", replace_original=replace_original
        )
    except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as error:
        logger.warning("could not answer through response_url: %s", error)
        return
    if response.status_code != 200:
        logger.warning("response_url answered %s: %s", response.status_code, response.body)
