"""The shared preamble of the buttons that name a thread (the picker's Reset, the reply's Stop),
as Bolt listener middleware: acknowledge, read the thread the button names, and answer an
out-of-date button before any listener runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond

from storage import ThreadKey

from . import payloads
from .intake import team_id_of
from .workspace import Middleware


def thread_button(out_of_date: str, *, replace_original: bool, names_turn: bool = False) -> Middleware:
    """Puts `button` (the `ButtonFields`), `thread` (the `ThreadKey` it names) and `tell` (a
    `respond` that never raises) in the context. A button whose value is unusable (or, with
    `names_turn`, names no turn) is told `out_of_date` instead, and no listener runs.
    Acknowledged first either way."""

    async def middleware(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], respond: AsyncRespond,
        context: AsyncBoltContext, next: Callable[[], Awaitable[None]],
    ) -> None:
        await ack()
        tell = payloads.safe(respond, body)
        fields = payloads.reset_button_fields(action, body)
        if fields is None or (names_turn and fields.item_id is None):
            await tell(out_of_date, replace_original=replace_original)
            return
        context["button"], context["tell"] = fields, tell
        context["thread"] = ThreadKey(team_id_of(context), fields.channel_id, fields.thread_ts)
        await next()

    return middleware
