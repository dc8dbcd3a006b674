"""The files a thread has seen since its last reset, shared in and produced: what `!files`
lists and `!export` packs. Written once over a `Connector`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .connector import Connector
from .models import ThreadKey
from .queue import thread_params

Direction = Literal["in", "out"]


@dataclass(frozen=True)
class ThreadFile:
    """One file: its Files API id, whether a person shared it in or the code made it, its name
    and size, the Slack message that brought it (or asked for it), and its Slack file."""

    file_id: str
    direction: Direction
    name: str
    size: int
    message_ts: str | None = None
    slack_file_id: str | None = None
    recorded_at: float = 0.0


class ThreadFileStore:
    connector: Connector

    async def note_thread_files(self, thread: ThreadKey, files: Sequence[ThreadFile]) -> None:
        """Record files the thread has seen (again: only a Slack file id learned since is kept)."""
        if files:
            await self.connector.execute_many("note_thread_file", [
                {**thread_params(thread), "file_id": f.file_id, "direction": f.direction, "name": f.name,
                 "size": f.size, "message_ts": f.message_ts, "slack_file_id": f.slack_file_id}
                for f in files
            ])

    async def waiting_in_thread(self, thread: ThreadKey, *, excluding: int) -> int:
        """Open items of the thread besides `excluding` (running, or waiting their turn)."""
        row = await self.connector.one("waiting_in_thread", {**thread_params(thread), "item": excluding})
        return int(row[0]) if row else 0

    async def thread_files(self, thread: ThreadKey) -> list[ThreadFile]:
        """The thread's files, in the order it saw them."""
        rows = await self.connector.all("thread_files", thread_params(thread))
        return [
            ThreadFile(str(file_id), direction, str(name), int(size), message_ts, slack_file_id, float(at))
            for file_id, direction, name, size, message_ts, slack_file_id, at in rows
        ]
