"""Streaming a reply with Slack's streaming methods: Markdown text and a step per code run."""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.models.messages.chunk import TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from ..errors import SLACK_ERRORS
from .blocks import context
from .message import MessageRenderer
from .state import ReplyState, ReplyTarget, Step
from .text import MARKDOWN_BLOCK_LIMIT, defuse_mentions

logger = logging.getLogger(__name__)

# Markdown streamed in one Slack message before the reply moves on to the next message.
STREAM_MESSAGE_LIMIT = MARKDOWN_BLOCK_LIMIT
STREAM_BUFFER_CHARS = 400
# A finished step waits this long to travel with the text or step that follows it.
STEP_FLUSH_SECONDS = 0.5


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
                blocks=[context(state.summary)] if state.summary else None,
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


