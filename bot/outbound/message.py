"""A reply as an ordinary message, posted once and edited as the turn goes (streaming off or
refused), and closing a reply an interrupted turn left behind."""

from __future__ import annotations

import asyncio
import logging
import time

from slack_sdk.web.async_client import AsyncWebClient

from ..errors import SLACK_ERRORS
from .blocks import Block, context, markdown, stop_button
from .pacing import has_room
from .state import WORKING_TEXT, ReplyState, ReplyTarget, Step
from .text import MARKDOWN_BLOCK_LIMIT, close_fence, defuse_markdown, notification_text, split_markdown

logger = logging.getLogger(__name__)

# chat.update is rate limited per message; one edit a second keeps well inside it.
UPDATE_INTERVAL_SECONDS = 1.0
# A lazy reply's first message waits this long for more of the answer: most answers are whole
# by then and cost one message, no edit.
LAZY_POST_SECONDS = 3.0


class MessageRenderer:
    """Posts one message and edits it as the turn goes; long answers continue in new messages.

    `lazy`: no "working" message first; the reply is posted `LAZY_POST_SECONDS` after its first
    words or code run, or whole when it ends sooner (a busy minute, when every edit saved
    counts). Progress edits are made only when Slack's budget has room at once; the final one
    waits for it."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        *,
        ts: str | None = None,
        text_offset: int = 0,
        stop_value: str | None = None,
        lazy: bool = False,
    ) -> None:
        self.client = client
        self.target = target
        self.stop_value = stop_value
        self.lazy = lazy
        self._ts = ts
        self._text_offset = text_offset
        self._last_update = 0.0
        self._pending: asyncio.Task[None] | None = None
        self._text_shown = False

    @property
    def message_ts(self) -> str | None:
        return self._ts

    async def start(self, state: ReplyState) -> None:
        if self._ts is None and not self.lazy:
            await self._post(state, WORKING_TEXT, final=False)

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
        # A note after an answer cut inside a code block must not read as code.
        body = "\n\n".join(part for part in (close_fence(state.text[self._text_offset :].strip()), footer) if part)
        pieces = split_markdown(body)
        # The closing line and the buttons go with the answer's last message.
        await self._update(state, pieces[0], final=True, closing=len(pieces) == 1)
        await post_markdown(self.client, self.target, pieces[1:], closing=state.closing)

    def _schedule(self, state: ReplyState) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._delayed_update(state))

    async def _delayed_update(self, state: ReplyState) -> None:
        if self._ts is None and self.lazy and not self._last_update:
            self._last_update = time.monotonic() + LAZY_POST_SECONDS - UPDATE_INTERVAL_SECONDS
        wait = self._last_update + UPDATE_INTERVAL_SECONDS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._ts is not None and not has_room(self.client, "chat.update"):
            self._last_update = time.monotonic()  # a busy minute: a later edit shows it all
            self._pending = asyncio.create_task(self._delayed_update(state))
            return
        text = state.text[self._text_offset :].strip()
        if len(text) > MARKDOWN_BLOCK_LIMIT - 100:
            text = "…" + text[-(MARKDOWN_BLOCK_LIMIT - 100) :]
        try:
            await self._update(state, f"{text}\n\n{WORKING_TEXT}" if text else WORKING_TEXT, final=False)
        except SLACK_ERRORS as error:
            logger.warning("progress update failed: %s", error)

    async def _post(self, state: ReplyState, text: str, *, final: bool, closing: bool = True) -> None:
        response = await self.client.chat_postMessage(
            channel=self.target.channel_id,
            thread_ts=self.target.thread_ts,
            text=notification_text(text),
            blocks=self._blocks(state, text, final=final, closing=closing),
        )
        self._ts = response["ts"]
        self._last_update = time.monotonic()

    async def _update(self, state: ReplyState, text: str, *, final: bool, closing: bool = True) -> None:
        if self._ts is None:
            await self._post(state, text, final=final, closing=closing)
            return
        self._last_update = time.monotonic()
        await self.client.chat_update(
            channel=self.target.channel_id,
            ts=self._ts or "",
            text=notification_text(text),
            blocks=self._blocks(state, text, final=final, closing=closing),
        )

    def _blocks(self, state: ReplyState, text: str, *, final: bool, closing: bool = True) -> list[Block]:
        blocks: list[Block] = []
        if state.steps:
            blocks.append(context("\n".join(step.line() for step in state.steps.values())))
        blocks.append(markdown(defuse_markdown(text)))
        if final and closing:
            blocks.extend(state.closing)
        if self.stop_value and not final:  # the reply's own button: no message of its own
            blocks.append(stop_button(self.stop_value))
        return blocks


async def close_reply(
    target: ReplyTarget, client: AsyncWebClient, ts: str, text: str, *, replace_text: bool
) -> None:
    """Close a reply message an interrupted turn left behind: stop its stream, then either add
    `text` (Markdown) to what it shows or (`replace_text`) show `text` instead. Best effort."""
    try:
        added = None if replace_text else f"\n\n{defuse_markdown(text)}"
        await client.chat_stopStream(channel=target.channel_id, ts=ts, markdown_text=added)
        if not replace_text:
            return
    except SLACK_ERRORS as error:
        logger.debug("stopStream on %s: %s", ts, error)  # not streaming (any more), or not a stream
    pieces = split_markdown(text)
    try:
        await client.chat_update(
            channel=target.channel_id, ts=ts, text=notification_text(pieces[0]),
            blocks=[markdown(defuse_markdown(pieces[0]))],
        )
    except SLACK_ERRORS as error:
        logger.warning("could not close the interrupted reply %s: %s", ts, error)
        return
    await post_markdown(client, target, pieces[1:])


async def post_markdown(
    client: AsyncWebClient, target: ReplyTarget, pieces: list[str], closing: list[Block] | None = None
) -> None:
    """The rest of a long answer, one message a piece after the reply; `closing` blocks (the
    closing line, the feedback buttons) under the last."""
    for number, piece in enumerate(pieces, 1):
        blocks = [markdown(defuse_markdown(piece))]
        if number == len(pieces):
            blocks += closing or []
        await client.chat_postMessage(
            channel=target.channel_id, thread_ts=target.thread_ts, text=notification_text(piece), blocks=blocks
        )


