"""Building the user message Claude reads: the request, who wrote it, what came before it in
the thread, and the files shared with it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anthropic.types import ContentBlockParam

from storage import InboxMessage, Store

from ..threads import is_dm, mentions, plain_text, strip_mention
from .context import TurnContext
from .earlier_messages import earlier_messages
from .shared_files import ContainerFile


def request_text(turn: TurnContext) -> str:
    """The message as the person typed it, without the bot's mention."""
    return plain_text(strip_mention(turn.item.text, turn.workspace.bot_user_id))


class Prompts:
    """The user message of a turn, with the thread's earlier messages where Claude needs them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def earlier(self, turn: TurnContext, history: Sequence[Mapping[str, Any]]) -> tuple[str, list[InboxMessage]]:
        """What Claude should read before the message: the thread so far when the bot joins it
        late, and (FOLLOW_UPS=mention) what people said since the last answer; with the
        kept notes it used, to drop once the turn is stored."""
        message, workspace = turn.message, turn.workspace
        parts = []
        if _joins_thread_late(message, history, workspace.bot_user_id):
            parts.append(await earlier_messages(workspace, message.thread, message.message_ts))
        notes = await self._notes_since_last_answer(turn)
        if notes:
            said = [f"{await workspace.access.name(note.user_id)}: {plain_text(note.text)}" for note in notes]
            parts.append("\n".join(said))
        return "\n".join(part for part in parts if part), notes

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


def _joins_thread_late(message: InboxMessage, history: Sequence[Mapping[str, Any]], bot_user_id: str) -> bool:
    """A mention inside an existing thread, with no history yet: the thread is its context."""
    is_reply = message.thread.thread_ts not in ("", message.message_ts)
    return is_reply and not history and mentions(message.text, bot_user_id)


def user_turn_content(
    text: str, files: list[ContainerFile], earlier: str = "", author: str | None = None
) -> list[ContentBlockParam]:
    """The user message for Claude: earlier thread messages, who wrote it, the text, what
    arrived, and a `container_upload` per file."""
    if files:
        listing = ", ".join(f"{f.filename} ({f.size:,} bytes)" for f in files)
        text = f"{text}\n\n[Files shared with this message, now in the container: {listing}]".strip()
    text = text or "(empty message)"
    if author:
        text = f"{author}: {text}"
    content: list[ContentBlockParam] = []
    if earlier:
        content.append({"type": "text", "text": f"Earlier messages in this Slack thread, for context:\n{earlier}"})
    content.append({"type": "text", "text": text})
    content.extend({"type": "container_upload", "file_id": f.file_id} for f in files)
    return content
