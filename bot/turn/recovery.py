"""Picking up after an attempt that died mid-turn: never leave its reply empty or streaming."""

from __future__ import annotations

from storage import Store

from ..model.transcript import last_answer_text
from ..outbound.message import close_reply
from .context import TurnContext

INTERRUPTED_NOTE = (
    "_:warning: This answer was interrupted (the bot restarted or lost this thread) and is"
    " being run again below._"
)
STOPPED_NOTE = "_:octagonal_sign: Stopped by {name}. What was said and done until then stays._"


async def close_stopped_attempt(turn: TurnContext) -> None:
    """Someone stopped this turn and its process died before it finished: never run it again."""
    item = turn.item
    note = STOPPED_NOTE.format(name=await turn.workspace.access.name(item.stop_requested_by or ""))
    if item.reply_ts:
        await close_reply(turn.target, turn.workspace.client, item.reply_ts, note, replace_text=False)
    else:
        await turn.say(note)


async def close_earlier_attempt(turn: TurnContext, store: Store) -> None:
    """An earlier attempt died mid-turn: show its stored answer, or say it runs again."""
    item, client = turn.item, turn.workspace.client
    if item.answered:
        conversation = await store.load_conversation(item.thread)
        answer = last_answer_text(conversation.history)
        await close_reply(turn.target, client, item.reply_ts or "", answer, replace_text=True)
    else:
        await close_reply(turn.target, client, item.reply_ts or "", INTERRUPTED_NOTE, replace_text=False)
