"""Picking up after an attempt that died mid-turn: never leave its reply empty, streaming, or
with a Stop button that stops nothing."""

from __future__ import annotations

import logging

from storage import Store

from ..errors import SLACK_ERRORS
from ..model.transcript import last_answer_text
from ..outbound.blocks import shows_stop_button
from ..outbound.message import close_reply
from .context import TurnContext

logger = logging.getLogger(__name__)

INTERRUPTED_NOTE = (
    "_:warning: This answer was interrupted (the bot restarted or lost this thread) and is"
    " being run again below._"
)
STOPPED_NOTE = "_:octagonal_sign: Stopped by {name}. What was said and done until then stays._"


async def close_stopped_attempt(turn: TurnContext) -> None:
    """Someone stopped this turn and its process died before it finished: never run it again."""
    item = turn.item
    note = STOPPED_NOTE.format(name=await turn.workspace.access.name(item.stop_requested_by or ""))
    await remove_stop_button(turn)
    if item.reply_ts:
        await close_reply(turn.target, turn.workspace.client, item.reply_ts, note, replace_text=False)
    else:
        await turn.say(note)


async def close_earlier_attempt(turn: TurnContext, store: Store) -> None:
    """An earlier attempt died mid-turn: show its stored answer, or say it runs again."""
    item, client = turn.item, turn.workspace.client
    await remove_stop_button(turn)
    if item.answered:
        conversation = await store.load_conversation(item.thread)
        answer = last_answer_text(conversation.history)
        await close_reply(turn.target, client, item.reply_ts or "", answer, replace_text=True)
    else:
        await close_reply(turn.target, client, item.reply_ts or "", INTERRUPTED_NOTE, replace_text=False)


async def remove_stop_button(turn: TurnContext) -> None:
    """The separate Stop button a dead attempt left under its streamed reply stops nothing now."""
    target, reply_ts = turn.target, turn.item.reply_ts
    if not target.thread_ts or not reply_ts:
        return
    client = turn.workspace.client
    try:
        after_reply = await client.conversations_replies(
            channel=target.channel_id, ts=target.thread_ts, oldest=reply_ts, limit=100
        )
        for message in after_reply.get("messages") or []:
            if message.get("bot_id") and shows_stop_button(message, turn.stop_value):
                await client.chat_delete(channel=target.channel_id, ts=message["ts"])
    except SLACK_ERRORS as error:
        logger.info("could not remove an interrupted turn's Stop button: %s", error)
