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
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import Chunk, PlanUpdateChunk, TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from ..errors import SLACK_ERRORS, slack_error
from .message import MessageRenderer
from .state import ReplyState, ReplyTarget, Step
from .text import MARKDOWN_BLOCK_LIMIT, MarkdownGuard

logger = logging.getLogger(__name__)
T = TypeVar("T")

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
        task_display: str = "timeline",
    ) -> None:
        """`task_display`: `plan` shows the answer's code runs together as one plan, under a
        title naming how many there are; `timeline` shows each where it ran."""
        self.client = client
        self.target = target
        self.support = support
        self.stop_value = stop_value
        self.task_display = task_display
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
        self._pending = ""
        """The answer's words not yet handed to the stream."""
        self._unsent = False
        """The SDK's helper holds words not sent yet."""
        self._failure: Exception | None = None
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
        """The words wait here; the first go out at once, later ones with the next send, which
        runs on its own so the model's stream never waits for Slack's."""
        self._raise_failure()
        self._pending += delta
        if not self._words_shown:
            self._words_shown = True
            async with self._lock:
                await self._send()
        else:
            self._flush_later()

    async def step(self, state: ReplyState, step: Step) -> None:
        self._raise_failure()
        if step.status != "in_progress":
            # Finished: it rides along with what comes next, or goes alone in a moment.
            self._ended[step.id] = step
            self._flush_later()
            return
        async with self._lock:  # a run starting shows at once, after the words before it
            if self.task_display == "plan":
                await self._send(PlanUpdateChunk(title=plan_title(len(state.steps))), step.chunk())
            else:
                await self._send(step.chunk())

    async def finish(self, state: ReplyState, footer: str) -> None:
        async with self._lock:  # after a send in flight; one still waiting is not needed now
            if self._flusher is not None:
                self._flusher.cancel()
            self._raise_failure()
            if self.stopped:
                return
            await self._take_pending()
            stream = await self._current()
            closed = self._guard.close()  # a note after an answer cut inside code is not code
            ending = f"{closed}\n\n{footer}" if footer and (state.text.strip() or closed) else closed + footer
            chunks = self._take_ended() or None
            await self._call(stream.stop(markdown_text=ending or None, chunks=chunks, blocks=state.closing or None))

    async def fallback(self) -> MessageRenderer:
        """Carry on by editing the current message. Slack refuses `chat.update` on a message
        that is still streaming, so a stream it still holds open is stopped first."""
        async with self._lock:
            if self._flusher is not None:
                self._flusher.cancel()
        ts = self._stream.ts if self._stream is not None else None
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
        self._streamed_chars, self._full, self._unsent = 0, False, False
        reopened = self._guard.fence  # a code block cut at the last message goes on here
        while True:
            stoppable: dict[str, Any] = {"is_stoppable": True} if self.support.stoppable else {}
            stream = await self.client.chat_stream(
                channel=self.target.channel_id,
                thread_ts=self.target.thread_ts or "",
                recipient_team_id=self.target.team_id,
                recipient_user_id=self.target.user_id,
                task_display_mode=self.task_display,
                buffer_size=STREAM_BUFFER_CHARS,
                **stoppable,
            )
            try:
                await stream.append(markdown_text=f"{reopened}\n" if reopened else None, chunks=[])
            except SlackApiError as error:
                if self.support.stoppable and slack_error(error) in STOP_CONTROL_REFUSALS:
                    logger.info("Slack has no stop control on streams here (%s)", slack_error(error))
                    self.support.stoppable = False
                    continue
                raise
            self._stream = stream
            self._last_send = time.monotonic()
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

    async def _take_pending(self) -> None:
        """The words waiting here into the stream's buffer, a message at a time (under the lock)."""
        delta, self._pending = self._pending, ""
        while delta and not self.stopped:
            stream = await self._current()
            piece, self._full = _next_piece(delta, self._streamed_chars)
            self._streamed_chars += len(piece)
            delta = delta[len(piece) :]
            decided = self._guard.feed(piece)
            if self._full:  # the message ends here: a code block open at the cut is closed
                decided += self._guard.close()
            if decided:  # held by the SDK's helper until the next send (or a full buffer)
                self._unsent = await self._call(stream.append(markdown_text=decided)) is None

    async def _send(self, *more: Chunk) -> None:
        """The words and finished steps waiting, and `more`, go out now in one call (under the lock)."""
        await self._take_pending()
        chunks: list[Chunk] = [*self._take_ended(), *more]
        if self.stopped or (not chunks and not self._unsent):
            return
        stream = await self._current()
        await self._call(stream.append(chunks=chunks))
        self._unsent, self._last_send = False, time.monotonic()

    def _flush_later(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_when_due())

    async def _flush_when_due(self) -> None:
        await asyncio.sleep(max(0.0, self._last_send + APPEND_INTERVAL_SECONDS - time.monotonic()))
        async with self._lock:
            try:
                await self._send()
            except SLACK_ERRORS as error:  # the turn's next call falls back and shows everything
                logger.warning("stream update failed: %s", error)
                self._failure = error

    def _raise_failure(self) -> None:
        """A send that failed on its own fails the turn's next call, which falls back."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _take_ended(self) -> list[TaskUpdateChunk]:
        chunks = [step.chunk() for step in self._ended.values()]
        self._ended.clear()
        return chunks

    async def _call(self, send: Coroutine[Any, Any, T]) -> T | None:
        """One Slack call on the stream; `stopped_by_user` ends the stream here and tells the turn."""
        if self.stopped:
            send.close()
            return None
        try:
            return await send
        except SlackApiError as error:
            if slack_error(error) != STOPPED_BY_USER:
                raise
            logger.info("the person stopped the reply in %s", self.target.channel_id)
            self.stopped = True
            if self._flusher is not None and self._flusher is not asyncio.current_task():
                self._flusher.cancel()
            self._on_stopped()
            return None


def plan_title(runs: int) -> str:
    return "Running code" if runs == 1 else f"Running code: {runs} steps"


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
