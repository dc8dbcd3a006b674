"""Streaming a reply with Slack's streaming methods: Markdown text and a step per code run.

Text is sent at most about once a second (the first words at once): Slack's append budget is
the workspace's, shared by every answer running there. A stream the person stops in Slack
takes nothing more, and the turn is told so it can stop too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from ..errors import SLACK_ERRORS
from .message import MessageRenderer
from .state import ReplyState, ReplyTarget, Step
from .text import MARKDOWN_BLOCK_LIMIT, MarkdownGuard

logger = logging.getLogger(__name__)

# Markdown streamed in one Slack message before the reply moves on to the next message.
STREAM_MESSAGE_LIMIT = MARKDOWN_BLOCK_LIMIT
# Text waits at most this long to go out with more; a step starting goes at once.
APPEND_INTERVAL_SECONDS = 1.0
# What the SDK's helper may hold before it sends on its own (well within one chunk's 12,000).
STREAM_BUFFER_CHARS = 4000
# Slack's words for "the person stopped this stream in Slack".
STOPPED_BY_USER = "stopped_by_user"
# Slack's answers to `is_stoppable` when the app cannot have a stop control on its streams.
STOP_CONTROL_REFUSALS = ("not_subscribed_to_message_stream_stopped", "invalid_arguments", "invalid_arg_name")


@dataclass
class StreamSupport:
    """What a workspace's Slack accepts on a stream, learned once for every answer there."""

    stoppable: bool = True
    """Whether streams get Slack's own stop control (`is_stoppable`)."""


class StreamRenderer:
    """Streams Markdown and steps into the reply with Slack's streaming methods."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        *,
        support: StreamSupport,
        on_stopped: Callable[[], None],
        stop_value: str | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.support = support
        self.stop_value = stop_value
        self._on_stopped = on_stopped
        self.stopped = False
        """The person stopped the stream in Slack: nothing more is written to it."""
        self._stream: AsyncChatStream | None = None
        self._streamed_chars = 0
        self._full = False
        # Where the current message's text starts in the whole answer.
        self._message_start = 0
        self._guard = MarkdownGuard()
        # One Slack call at a time on the stream (the delayed flush runs on its own).
        self._lock = asyncio.Lock()
        self._ended: dict[str, Step] = {}
        self._held = False
        """Text or finished steps are waiting in the buffer for the next send."""
        self._last_send = 0.0
        self._words_shown = False
        """The answer's first words went out (they go at once; later ones at most once a second)."""
        self._flusher: asyncio.Task[None] | None = None

    @property
    def message_ts(self) -> str | None:
        return self._stream.ts if self._stream is not None else None

    async def start(self, state: ReplyState) -> None:
        # Starting right away shows the reply at once and tells us whether streaming works here.
        await self._call(self._open_now())

    async def text(self, state: ReplyState, delta: str) -> None:
        async with self._lock:
            while delta and not self.stopped:
                stream = await self._current()
                piece, self._full = _next_piece(delta, self._streamed_chars)
                self._streamed_chars += len(piece)
                delta = delta[len(piece) :]
                decided = self._guard.feed(piece)
                if self._full:  # the message ends here: a code block open at the cut is closed
                    decided += self._guard.close()
                if decided:
                    await self._call(stream.append(markdown_text=decided))
                    self._held = True
            first_words = self._streamed_chars and not self._words_shown
            if self._held and (first_words or time.monotonic() - self._last_send >= APPEND_INTERVAL_SECONDS):
                self._words_shown = True
                await self._send()
            elif self._held:
                self._flush_later()

    async def step(self, state: ReplyState, step: Step) -> None:
        if step.status != "in_progress":
            # Finished: it rides along with what comes next, or goes alone in a moment.
            self._ended[step.id] = step
            self._held = True
            self._flush_later()
            return
        async with self._lock:
            if not self.stopped:
                stream = await self._current()
                chunks = [*self._take_ended(), step.chunk()]
                await self._call(stream.append(chunks=chunks))
                self._sent()

    async def finish(self, state: ReplyState, footer: str) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        async with self._lock:
            if self.stopped:
                return
            stream = await self._current()
            closed = self._guard.close()  # a note after an answer cut inside code is not code
            ending = f"{closed}\n\n{footer}" if footer and (state.text.strip() or closed) else closed + footer
            chunks = self._take_ended() or None
            await self._call(stream.stop(markdown_text=ending or None, chunks=chunks, blocks=state.closing or None))

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

    async def _open_now(self) -> None:
        """A new stream message, started at once (with Slack's stop control where it has one)."""
        self._message_start += self._streamed_chars
        self._streamed_chars, self._full = 0, False
        reopened = self._guard.fence  # a code block cut at the last message goes on here
        while True:
            stoppable: dict[str, Any] = {"is_stoppable": True} if self.support.stoppable else {}
            stream = await self.client.chat_stream(
                channel=self.target.channel_id,
                thread_ts=self.target.thread_ts or "",
                recipient_team_id=self.target.team_id,
                recipient_user_id=self.target.user_id,
                task_display_mode="timeline",
                buffer_size=STREAM_BUFFER_CHARS,
                **stoppable,
            )
            try:
                await stream.append(markdown_text=f"{reopened}\n" if reopened else None, chunks=[])
            except SlackApiError as error:
                if self.support.stoppable and error.response.get("error") in STOP_CONTROL_REFUSALS:
                    logger.info("Slack has no stop control on streams here (%s)", error.response.get("error"))
                    self.support.stoppable = False
                    continue
                raise
            self._stream = stream
            self._sent()
            return

    async def _current(self) -> AsyncChatStream:
        """The open stream, moving on to a new message once this one is full."""
        if self._stream is None:
            await self._call(self._open_now())
        elif self._full:
            stream, chunks = self._stream, self._take_ended() or None
            await self._call(stream.stop(chunks=chunks))
            await self._call(self._open_now())
        assert self._stream is not None
        return self._stream

    async def _send(self) -> None:
        """What waits in the buffer (text, finished steps) goes out now."""
        if self._stream is not None and self._held and not self.stopped:
            stream, chunks = self._stream, self._take_ended()
            await self._call(stream.append(chunks=chunks))
            self._sent()

    def _sent(self) -> None:
        self._held, self._last_send = False, time.monotonic()

    def _flush_later(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_when_due())

    async def _flush_when_due(self) -> None:
        await asyncio.sleep(max(0.0, self._last_send + APPEND_INTERVAL_SECONDS - time.monotonic()))
        async with self._lock:
            try:
                await self._send()
            except SLACK_ERRORS as error:  # the next call falls back and shows everything
                logger.warning("stream update failed: %s", error)

    def _take_ended(self) -> list[TaskUpdateChunk]:
        chunks = [step.chunk() for step in self._ended.values()]
        self._ended.clear()
        return chunks

    async def _call(self, send: Coroutine[Any, Any, object]) -> None:
        """One Slack call on the stream; `stopped_by_user` ends the stream here and tells the turn."""
        if self.stopped:
            send.close()
            return
        try:
            await send
        except SlackApiError as error:
            if error.response.get("error") != STOPPED_BY_USER:
                raise
            logger.info("the person stopped the reply in %s", self.target.channel_id)
            self.stopped = True
            if self._flusher is not None and self._flusher is not asyncio.current_task():
                self._flusher.cancel()
            self._on_stopped()


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
