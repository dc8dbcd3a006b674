"""A thread's work, kept: `!files` lists what it has seen, `!export` packs it for the outside.

Both ask no model and cost nothing. The export is a notebook of the thread (`notebook.py`) and
a zip of that notebook, every file the thread shared in or produced that the Files API still
has, a `MANIFEST.json` (each file's sha256, size, direction and turn) and a `README.md`. Each
file goes through a temporary file on disk, so memory stays flat however large they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Any

import aiohttp
import anthropic
from slack_sdk.web.async_client import AsyncWebClient

from storage import Store, ThreadFile, ThreadKey

from ..errors import SLACK_ERRORS, FileRelayError
from ..outbound.blocks import fork_button, section
from ..outbound.slack_upload import SlackUpload, complete_uploads
from ..outbound.text import code_span, escape_mrkdwn
from ..outbound.uploads import CHUNK_BYTES, download_output, read_chunks, size_text, unique_name
from .context import TurnContext
from .notebook import notebook_bytes, thread_notebook
from .shared_files import download_to

logger = logging.getLogger(__name__)

LISTED_FILES = 40
FORK_OPENING = (
    ":twisted_rightwards_arrows: Forked from {original} by <@{user}>: reply in this thread to go on from"
    " there another way. It has that thread's conversation so far and its {count} file(s), in a container of"
    " its own; the original stays as it was."
)
FORKED_NOTE = ":twisted_rightwards_arrows: Forked into {fork}: this thread and its container stay as they are."
FORK_TOO_BIG_NOTE = (
    "I can't fork this thread: it has {count} file(s), {size} in all, and a fork takes at most {files} files"
    " and {limit}. `!reset` starts afresh instead."
)
FILES_FOOTER = "`!export` packs the thread as a notebook and a zip; `!files all` asks Claude for the whole container."
NO_FILES_NOTE = "This thread has no files yet: share one with a message, or ask for one."
EXPORT_LIMIT_BYTES = 1024 * 1024 * 1024
"""Slack takes uploads up to 1 GB: the zip stops growing there."""
README = """# {title}

Exported from Slack by threadbox: `{notebook}` holds the thread in its order (each message and
answer as a markdown cell, each code run as a `%%bash` cell with what it printed, each file
Claude wrote as a `%%writefile` cell); `files/` holds the files the thread shared in and
produced; `MANIFEST.json` lists each with its sha256, size, direction (`in`: shared by a person,
`out`: made by the code) and the Slack message (`turn`) that brought or asked for it.

To rerun the work on your own machine:

1. `pip install jupyterlab` (the cells need `bash`, and whatever the code itself imports).
2. Copy the files you shared (`files/`, direction `in`) to where the code read them: the
   container kept them under `/mnt/user/` and wrote outputs to `$OUTPUT_DIR`
   (`export OUTPUT_DIR=$PWD/outputs && mkdir -p "$OUTPUT_DIR"` before starting Jupyter).
3. `jupyter lab {notebook}` and run the cells from the top, in order.
"""


@dataclass(frozen=True)
class PackedFile:
    record: ThreadFile
    path: str
    sha256: str
    size: int


class ThreadExports:
    """`!files` and `!export` for one process."""

    def __init__(self, store: Store, claude: anthropic.AsyncAnthropic, http: aiohttp.ClientSession, *,
                 timeout: float, max_file_bytes: int, max_fork_files: int, max_fork_bytes: int) -> None:
        self.store = store
        self.claude = claude
        self.http = http
        self.timeout = timeout
        self.max_file_bytes = max_file_bytes
        self.max_fork_files = max_fork_files
        self.max_fork_bytes = max_fork_bytes

    # --- !files ---------------------------------------------------------------------------

    async def list_files(self, turn: TurnContext) -> None:
        """The thread's files: name, size, which message brought or made it, a link to each in
        Slack; those the Files API no longer has are marked. Only the asker sees it while more
        work waits in the thread."""
        files = await self.store.thread_files(turn.thread)
        text = await self._listing(turn, files) if files else NO_FILES_NOTE
        if await self.store.waiting_in_thread(turn.thread, excluding=turn.item.id):
            await turn.tell_asker(text)
            return
        blocks = [section(text), fork_button(turn.thread)] if files else None
        try:
            await turn.workspace.client.chat_postMessage(
                channel=turn.target.channel_id, thread_ts=turn.target.thread_ts, text=text, blocks=blocks
            )
        except SLACK_ERRORS as error:
            logger.error("could not list the files of %s: %s", turn.thread, error)

    async def _listing(self, turn: TurnContext, files: list[ThreadFile]) -> str:
        lines = [f"*Files in this thread* ({len(files)}, since its last reset):"]
        for record in files[:LISTED_FILES]:
            kept = await self._still_kept(record.file_id)
            how = "shared with" if record.direction == "in" else "made for"
            message = _thread_link(turn, record.message_ts, "this message", in_thread=True) or "a message"
            link = await self._slack_link(turn, record.slack_file_id)
            gone = "" if kept else " _(gone from the Files API: not in an export or a fork)_"
            lines.append(
                f"• {code_span(record.name)}, {size_text(record.size)}, {how} {message}{link}{gone}"
            )
        if len(files) > LISTED_FILES:
            lines.append(f"…and {len(files) - LISTED_FILES} more (`!export` packs them all).")
        lines.append(FILES_FOOTER)
        return "\n".join(lines)

    async def _still_kept(self, file_id: str) -> bool:
        try:
            await self.claude.files.retrieve_metadata(file_id, timeout=self.timeout)
        except anthropic.NotFoundError:
            return False
        except anthropic.APIError as error:  # unknown: say nothing of it
            logger.info("could not look up %s: %s", file_id, error)
        return True

    async def _slack_link(self, turn: TurnContext, slack_file_id: str | None) -> str:
        if not slack_file_id:
            return ""
        try:
            permalink = (await turn.workspace.client.files_info(file=slack_file_id))["file"].get("permalink")
        except SLACK_ERRORS as error:
            logger.info("files.info %s failed: %s", slack_file_id, error)
            return ""
        return f" · <{permalink}|open in Slack>" if permalink else ""

    # --- !fork ----------------------------------------------------------------------------

    async def fork(self, turn: TurnContext) -> None:
        """A new thread in the same conversation, linking back: a copy of this one's history,
        and every file the Files API still has, put into its own new container by its first
        turn. The original stays as it was."""
        thread, client = turn.thread, turn.workspace.client
        kept = [f for f in await self.store.thread_files(thread) if await self._still_kept(f.file_id)]
        size = sum(f.size for f in kept)
        if len(kept) > self.max_fork_files or size > self.max_fork_bytes:
            await turn.say(FORK_TOO_BIG_NOTE.format(
                count=len(kept), size=size_text(size), files=self.max_fork_files, limit=size_text(self.max_fork_bytes)
            ))
            return
        original = _thread_link(turn, thread.thread_ts or turn.item.message_ts, "this thread") or "another thread"
        opening = FORK_OPENING.format(original=original, user=turn.item.user_id, count=len(kept))
        try:
            posted = await client.chat_postMessage(channel=thread.channel_id, text=opening)
        except SLACK_ERRORS as error:
            await turn.say(f":warning: I couldn't start the fork: {escape_mrkdwn(str(error))}")
            return
        fork_ts = str(posted["ts"])
        carried = [{"file_id": f.file_id, "name": f.name, "size": f.size} for f in kept]
        await self.store.fork_conversation(thread, fork_ts, carried)
        await self.store.note_thread_files(ThreadKey(thread.team_id, thread.channel_id, fork_ts), kept)
        fork = _thread_link(turn, fork_ts, "a new thread") or "a new thread"
        await turn.say(FORKED_NOTE.format(fork=fork))

    # --- !export --------------------------------------------------------------------------

    async def export(self, turn: TurnContext) -> None:
        """The notebook and the zip, uploaded into the thread in one message."""
        thread = turn.thread
        conversation = await self.store.load_conversation(thread)
        stem = f"thread-{thread.thread_ts or thread.channel_id}"
        title = f"threadbox thread {thread.thread_ts or 'DM'} in {thread.channel_id}"
        notebook = notebook_bytes(thread_notebook(conversation.history, title=title))
        files = await self.store.thread_files(thread)
        client = turn.workspace.client
        with tempfile.TemporaryFile() as spool:
            packed, missing = await self.pack(client, spool, f"{stem}.ipynb", notebook, files, title)
            size = await asyncio.to_thread(_size_of, spool)
            notebook_upload = SlackUpload(client, self.http, f"{stem}.ipynb", len(notebook), self.timeout)
            zip_upload = SlackUpload(client, self.http, f"{stem}.zip", size, self.timeout)
            try:
                await notebook_upload.open()
                await notebook_upload.send(_once(notebook))
                await zip_upload.open()
                await zip_upload.send(read_chunks(spool))
                comment = _export_note(packed, missing)
                await complete_uploads(client, [notebook_upload, zip_upload], turn.target.channel_id,
                                       turn.target.thread_ts, self.timeout, comment=comment)
            except (FileRelayError, *SLACK_ERRORS, TimeoutError) as error:
                logger.warning("export of %s failed: %s", thread, error)
                await turn.say(f":warning: I couldn't upload the export: {escape_mrkdwn(str(error))}")

    async def pack(
        self, client: AsyncWebClient, spool: IO[bytes], notebook_name: str, notebook: bytes, files: list[ThreadFile],
        title: str,
    ) -> tuple[list[PackedFile], list[str]]:
        """The export's zip, written into `spool`: what went in, and the names left out."""
        archive = zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        names: set[str] = {notebook_name, "MANIFEST.json", "README.md"}
        packed: list[PackedFile] = []
        missing: list[str] = []
        total = len(notebook)
        for record in files:
            if not await self._still_kept(record.file_id):
                missing.append(record.name)
                continue
            try:
                with tempfile.TemporaryFile() as whole:
                    await self._fetch(client, record, whole)
                    size = await asyncio.to_thread(_size_of, whole)
                    if total + size > EXPORT_LIMIT_BYTES:
                        raise FileRelayError(f"{code_span(record.name)} would pass Slack's 1 GB upload limit")
                    path = unique_name(f"files/{record.name}", names)
                    digest = await asyncio.to_thread(_pack, archive, path, whole)
            except FileRelayError as error:
                logger.info("left out of the export: %s", error)
                missing.append(record.name)
                continue
            total += size
            packed.append(PackedFile(record, path, digest, size))
        manifest = [
            {"path": f.path, "name": f.record.name, "sha256": f.sha256, "size": f.size,
             "direction": f.record.direction, "turn": f.record.message_ts}
            for f in packed
        ]
        await asyncio.to_thread(archive.writestr, notebook_name, notebook)
        await asyncio.to_thread(archive.writestr, "MANIFEST.json",
                                json.dumps({"files": manifest, "left_out": missing}, indent=2))
        await asyncio.to_thread(archive.writestr, "README.md", README.format(title=title, notebook=notebook_name))
        await asyncio.to_thread(archive.close)
        return packed, missing

    async def _fetch(self, client: AsyncWebClient, record: ThreadFile, into: IO[bytes]) -> None:
        """A file's bytes onto disk: what the code made from the Files API, what a person
        shared from Slack (the Files API gives back only what the tool created)."""
        if record.direction == "out":
            await download_output(self.claude, record.file_id, record.name, into, self.timeout)
            return
        try:
            info: dict[str, Any] = (await client.files_info(file=record.slack_file_id or ""))["file"]
        except SLACK_ERRORS as error:
            raise FileRelayError(f"couldn't find {code_span(record.name)} in Slack: {error}") from error
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        if not url:
            raise FileRelayError(f"{code_span(record.name)} is no longer in Slack")
        await download_to(into, self.http, url, client.token or "", record.name,
                          str(info.get("mimetype") or "application/octet-stream"), self.max_file_bytes, self.timeout)


def _pack(archive: zipfile.ZipFile, path: str, source: IO[bytes]) -> str:
    """Copy `source` into the zip under `path`, chunk by chunk; its sha256."""
    digest = hashlib.sha256()
    source.seek(0)
    with archive.open(path, "w", force_zip64=True) as target:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            target.write(chunk)
    return digest.hexdigest()


def _size_of(handle: IO[bytes]) -> int:
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    return size


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _export_note(packed: list[PackedFile], missing: list[str]) -> str:
    note = f"The thread as a notebook, and a zip of it with {len(packed)} file(s), a manifest and how to rerun it."
    if missing:
        note += " Left out (gone from the Files API or from Slack): " + ", ".join(code_span(n) for n in missing[:20])
    return note


def _thread_link(turn: TurnContext, ts: str | None, label: str, *, in_thread: bool = False) -> str:
    """A link to a message of the channel (`in_thread`: a reply in the turn's thread), or ""
    where the workspace's URL is unknown."""
    base = turn.workspace.url
    if not ts or not base:
        return ""
    link = f"{base.rstrip('/')}/archives/{turn.thread.channel_id}/p{ts.replace('.', '')}"
    if in_thread and turn.thread.thread_ts:
        link += f"?thread_ts={turn.thread.thread_ts}&cid={turn.thread.channel_id}"
    return f"<{link}|{label}>"

