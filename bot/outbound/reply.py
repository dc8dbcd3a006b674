"""The bot's reply in a thread, live while Claude works.

Preferred: Slack's streaming surface (`chat.startStream`/`appendStream`/`stopStream`) with a
`task_update` step per code run and Slack's own stop control (`stream.py`). Where streaming is
off or Slack refuses it, the same state is rendered into an ordinary message that is updated at
a polite pace and carries its own Stop button (`message.py`). No message is ever posted only to
be deleted again.

A workspace can start only about 20 streams a minute (and edit about 50 messages): when this
minute's streams are used up, a reply is an ordinary message instead, posted with its first
words (`chat.postMessage` is counted per channel), so a burst of people is answered at the
model's pace rather than Slack's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from slack_sdk.web.async_client import AsyncWebClient

from ..errors import SLACK_ERRORS
from .blocks import Block, context
from .message import MessageRenderer, close_reply
from .pacing import RESERVED, Reservation, has_room, reserve
from .state import Renderer, ReplyState, ReplyTarget, Step, final_status, sources_line, words_so_far
from .stream import StreamRenderer, StreamSupport

logger = logging.getLogger(__name__)

# The most an interrupted turn spends closing its reply.
INTERRUPT_SECONDS = 5.0


class Reply:
    """Receives a turn's progress (it is a `TurnObserver`) and shows it in the thread."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        *,
        streaming: bool,
        task_display: str = "timeline",
        support: StreamSupport | None = None,
        on_message: Callable[[str], Awaitable[None]] | None = None,
        on_stopped: Callable[[], None] | None = None,
        stop_value: str | None = None,
        feedback: Block | None = None,
    ) -> None:
        """`stop_value`: the value of the reply's Stop button (none without it); `on_stopped`:
        the person stopped the reply in Slack; `feedback`: the buttons under the finished answer."""
        self.client = client
        self.target = target
        self.state = ReplyState()
        # Told each reply message's ts as soon as it exists, so a crash never leaves it open.
        self._on_message = on_message
        self._reported_ts: str | None = None
        self._streaming = streaming and bool(target.thread_ts)
        self._renderer: Renderer = (
            StreamRenderer(
                client, target, support=support or StreamSupport(), on_stopped=on_stopped or (lambda: None),
                stop_value=stop_value, task_display=task_display,
            )
            if self._streaming
            else MessageRenderer(client, target, stop_value=stop_value)
        )
        self._stop_value = stop_value
        self._reservation: Reservation | None = None
        """The places this reply's stream took in Slack's minute (its start and its stop)."""
        self._opening: asyncio.Task[None] | None = None
        self._status: str | None = None
        self._feedback = feedback

    @property
    def stopped_in_slack(self) -> bool:
        """The person stopped this reply with Slack's own control: it takes nothing more."""
        return isinstance(self._renderer, StreamRenderer) and self._renderer.stopped

    def open(self) -> None:
        """Show the status and the reply without waiting for Slack: the model request goes out
        meanwhile, and anything it says before the reply is open waits for it."""
        if self._opening is None:
            self._opening = asyncio.create_task(self._open())

    async def _open(self) -> None:
        if self._streaming:
            self._reservation = await reserve(self.client, "chat.startStream", "chat.stopStream")
        if self._streaming and self._reservation is None:
            logger.info("this minute's streams are used up; the reply is a message posted with its first words")
            self._renderer = MessageRenderer(self.client, self.target, stop_value=self._stop_value, lazy=True)
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

    async def on_thinking(self, delta: str) -> None:
        """Between code runs current models write to themselves: the next step shows it."""
        self.state.thinking += delta

    async def on_tool_start(self, tool_id: str, title: str, kind: str = "code") -> None:
        details, self.state.thinking = words_so_far(self.state.thinking), ""
        step = self.state.steps[tool_id] = Step(tool_id, title, details=details, kind=kind)
        await self._show(step)
        await self.set_status("is running code…" if kind == "code" else "is reading the web…")

    async def on_tool_end(
        self, tool_id: str, ok: bool, excerpt: str, sources: Sequence[tuple[str, str]] = ()
    ) -> None:
        # No status change here: the next step or the text that follows shows what happens.
        step = self.state.steps.setdefault(tool_id, Step(tool_id, "code"))
        step.status, step.output, step.sources = ("complete" if ok else "error"), excerpt, list(sources)
        await self._show(step)

    async def finish(self, notes: list[str] | None = None, *, failed: bool = False, usage: str = "") -> None:
        """End the reply; `notes` (errors, warnings) are appended after the answer, `usage`
        to the closing status line, and the feedback buttons under it all."""
        for step in self.state.steps.values():
            if step.status == "in_progress":  # the turn ended before this run reported back
                step.status, step.output = "error", "no result"
                await self._show(step)
        summary = " · ".join(part for part in (final_status(self.state, failed), usage) if part)
        self.state.closing = [context(summary)] if summary else []
        pages = sources_line(self.state)
        if pages:
            self.state.closing.insert(0, context(pages))
        if self._feedback is not None:
            self.state.closing.append(self._feedback)
        footer = "\n\n".join(notes or [])
        if not self.state.text.strip() and not footer:
            footer = "_(no text in the answer)_"
        await self._render(lambda renderer: renderer.finish(self.state, footer))

    def release(self) -> None:
        """Give back the places in Slack's minute this reply took and did not use."""
        if self._reservation is not None:
            self._reservation.release()

    @property
    def message_ts(self) -> str | None:
        """The reply's (first) message, once it exists."""
        return self._renderer.message_ts

    async def interrupt(self, note: str) -> None:
        """The turn ended early and runs again: close the reply with `note`, in a few seconds
        at most (best effort: a process that is shutting down may not have more)."""
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        ts = self._renderer.message_ts
        if ts is None:
            return
        reserved = RESERVED.set(self._reservation)
        try:
            async with asyncio.timeout(INTERRUPT_SECONDS):
                await close_reply(self.target, self.client, ts, note, replace_text=False)
        except TimeoutError:
            logger.warning("could not close the interrupted reply %s in time", ts)
        finally:
            RESERVED.reset(reserved)

    async def _show(self, step: Step) -> None:
        await self._render(lambda renderer: renderer.step(self.state, step))

    async def set_status(self, status: str) -> None:
        """The thread's status line, set only when it changes; best effort (it exists only
        where Slack allows it)."""
        if not self.target.thread_ts or status == self._status or self.stopped_in_slack:
            return
        if not has_room(self.client, "assistant.threads.setStatus"):
            return  # a busy minute: the reply itself shows the progress
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
        reserved = RESERVED.set(self._reservation)
        try:
            await action(self._renderer)
        except SLACK_ERRORS as error:
            if not isinstance(self._renderer, StreamRenderer):
                raise
            logger.warning("streaming unavailable (%s); falling back to message updates", error)
            self._renderer = await self._renderer.fallback()
            await self._renderer.start(self.state)
            await action(self._renderer)
        finally:
            RESERVED.reset(reserved)
            await self._report_message()

    async def _report_message(self) -> None:
        ts = self._renderer.message_ts
        if ts and ts != self._reported_ts and self._on_message is not None:
            self._reported_ts = ts
            await self._on_message(ts)
