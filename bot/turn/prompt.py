"""Building the user message Claude reads: the request, who wrote it, what came before it in
the thread, and the files shared with it."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from anthropic.types import ContentBlockParam

from storage import InboxMessage, Store

from ..threads import is_dm, mentions, plain_text, strip_mention
from .context import TurnContext
from .earlier_messages import channel_messages, earlier_messages
from .shared_files import ContainerFile

# "this channel", "this thread", "the thread I'm looking at"…: a DM about what the person views.
_ABOUT_THE_VIEW = re.compile(
    r"\b(this|that|the current|the open)\s+(channel|thread|conversation|discussion)\b"
    r"|\b(looking at|viewing|i'?m on)\b",
    re.IGNORECASE,
)
EARLIER_HEADING = "Earlier messages in this Slack thread, for context:"
# What a person looked at longer ago than this is not what "this channel" means now.
VIEW_FRESH_SECONDS = 3600.0


ASKED_AS_COMMANDS = {
    "files all": (
        "List every file in this thread's container (the working directory, /mnt/user and $OUTPUT_DIR's"
        " parents, not the system's own files), with each one's size and when it last changed, as a table."
    ),
}
"""Short forms that are requests to Claude, not commands of the bot's own."""


def request_text(turn: TurnContext) -> str:
    """The message as the person typed it, without the bot's mention (a short form such as
    `!files all` in the words Claude is asked)."""
    text = plain_text(strip_mention(turn.item.text, turn.workspace.bot_user_id))
    return ASKED_AS_COMMANDS.get(text.strip().lower().removeprefix("!"), text)


class Prompts:
    """The user message of a turn, with the thread's earlier messages where Claude needs them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def earlier(self, turn: TurnContext, history: Sequence[Mapping[str, Any]]) -> tuple[str, list[InboxMessage]]:
        """What Claude should read before the message: the thread so far when the bot joins it
        late and (FOLLOW_UPS=mention) what people said since the last answer, under one
        heading; in a DM, what the person views beside the app. With the kept notes it used,
        to drop once the turn is stored."""
        message, workspace = turn.message, turn.workspace
        in_thread = []
        if _joins_thread_late(message, history, workspace.bot_user_id):
            in_thread.append(await earlier_messages(workspace, message.thread, message.message_ts))
        notes = await self._notes_since_last_answer(turn)
        in_thread += [f"{await workspace.access.name(note.user_id)}: {plain_text(note.text)}" for note in notes]
        said = "\n".join(line for line in in_thread if line)
        parts = [f"{EARLIER_HEADING}\n{said}" if said else "", await self._what_they_view(turn)]
        return "\n".join(part for part in parts if part), notes

    async def _what_they_view(self, turn: TurnContext) -> str:
        """In a DM about "this channel" or "this thread": what the person views beside the app
        (Slack's `app_context_changed`), if they may see it — as a late mention reads a thread."""
        message, workspace = turn.message, turn.workspace
        if not is_dm(message.thread.channel_id) or not _ABOUT_THE_VIEW.search(message.text):
            return ""
        view = await self.store.viewing(message.thread.team_id, message.user_id, since=time.time() - VIEW_FRESH_SECONDS)
        if view is None or not (await workspace.access.check_thread(message.user_id, view)).allowed:
            return ""
        if view.thread_ts:
            said = await earlier_messages(workspace, view, _later_than(message.message_ts))
            where = f"the thread they are viewing (in <#{view.channel_id}>)"
        else:
            said = await channel_messages(workspace, view.channel_id, message.message_ts)
            where = f"the channel they are viewing (<#{view.channel_id}>)"
        return f"Recent messages in {where}, for context:\n{said}" if said else ""

    async def author(self, turn: TurnContext) -> str | None:
        """Where several people can talk, Claude is told who wrote each message."""
        if is_dm(turn.thread.channel_id):
            return None
        return await turn.workspace.access.name(turn.item.user_id)

    async def _notes_since_last_answer(self, turn: TurnContext) -> list[InboxMessage]:
        """With FOLLOW_UPS=mention: what people said in the thread without mentioning the bot,
        except what refused people said."""
        if turn.settings.follow_ups != "mention":
            return []
        notes = await self.store.notes_before(turn.thread, turn.item.message_ts or "")
        access = turn.workspace.access
        return [n for n in notes if (await access.check(n.user_id, n.thread.channel_id)).allowed]


def _later_than(ts: str) -> str:
    """A Slack timestamp a moment after `ts` (a DM message's time), to read a thread up to now."""
    try:
        return f"{float(ts) + 1:.6f}"
    except ValueError:
        return f"{time.time():.6f}"


def _joins_thread_late(message: InboxMessage, history: Sequence[Mapping[str, Any]], bot_user_id: str) -> bool:
    """A mention inside an existing thread, with no history yet: the thread is its context."""
    is_reply = message.thread.thread_ts not in ("", message.message_ts)
    return is_reply and not history and mentions(message.text, bot_user_id)


def user_turn_content(
    text: str, files: list[ContainerFile], earlier: str = "", author: str | None = None,
    inherited: Sequence[ContainerFile] = (),
) -> list[ContentBlockParam]:
    """The user message for Claude: earlier thread messages, who wrote it, the text, what
    arrived, and a `container_upload` per file (`inherited`: a fork's files from its original,
    into its new container)."""
    if inherited:
        listing = ", ".join(f"{f.filename} ({f.size:,} bytes)" for f in inherited)
        carried = f"[This thread was forked from another; its files are in this new container again: {listing}]"
        earlier = f"{earlier}\n\n{carried}".strip()
    if files:
        listing = ", ".join(f"{f.filename} ({f.size:,} bytes)" for f in files)
        text = f"{text}\n\n[Files shared with this message, now in the container: {listing}]".strip()
    text = text or "(empty message)"
    if author:
        text = f"{author}: {text}"
    content: list[ContentBlockParam] = []
    if earlier:
        content.append({"type": "text", "text": earlier})
    content.append({"type": "text", "text": text})
    content.extend({"type": "container_upload", "file_id": f.file_id} for f in [*inherited, *files])
    return content
