"""Relaying files between Slack and the container, streamed in chunks so memory stays flat.

`files_upload_v2` would read a whole file into memory; here the same three steps
(`files.getUploadURLExternal`, POST the bytes, `files.completeUploadExternal`) are done with
the bytes flowing straight from the Files API download into the upload. Every step has a
timeout, and a file that fails becomes one line for the thread, never a failed turn.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, TypeVar
from urllib.parse import urlparse

import aiohttp
import anthropic
import httpx2
from anthropic.types import FileMetadata
from slack_sdk.web.async_client import AsyncWebClient

from .slack_text import code_span, defuse_mentions, escape_mrkdwn

logger = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
# Slack refuses uploads above 1 GB.
SLACK_UPLOAD_LIMIT_BYTES = 1024 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 60.0
ZIP_NAME = "files.zip"
# Lines of a zip's listing shown in the thread; the zip itself holds every file.
MAX_LISTED_FILES = 50
T = TypeVar("T")


class FileRelayError(Exception):
    """A file could not be relayed; the message is meant for the thread (already escaped)."""


@dataclass(frozen=True)
class RelayedFile:
    file_id: str
    filename: str
    size: int


async def _within(seconds: float, step: Awaitable[T], what: str) -> T:
    """One API call of a transfer, bounded: a silent server ends as a clear FileRelayError."""
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError:
        raise FileRelayError(f"{what}: no answer within {seconds:g} seconds.") from None


async def relay_output_to_slack(
    claude: anthropic.AsyncAnthropic,
    slack: AsyncWebClient,
    http: aiohttp.ClientSession,
    file_id: str,
    *,
    channel_id: str,
    thread_ts: str | None,
    upload_limit: int = SLACK_UPLOAD_LIMIT_BYTES,
    skip: Collection[tuple[str, int]] = (),
    on_upload: Callable[[str], Awaitable[None]] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> RelayedFile | None:
    """Copy one file the code produced from the Files API into the thread, under its real name.

    Returns None for a file in `skip` (name, size): a user's own file copied back out.
    `on_upload` learns the Slack file id before the upload is completed, so a crash in
    between can be checked later instead of uploading the file twice.
    """
    meta = await _metadata(claude, file_id, timeout)
    if (meta.filename, meta.size_bytes) in skip:
        return None
    if meta.size_bytes > upload_limit:
        raise FileRelayError(
            f"{code_span(meta.filename)} is {_megabytes(meta.size_bytes)}, over Slack's upload limit"
            f" of {_megabytes(upload_limit)}; it stays in the container."
        )
    upload = _Upload(slack, http, meta.filename, meta.size_bytes, timeout)
    await upload.open(on_upload)
    try:
        async with claude.files.with_streaming_response.download(meta.id, timeout=timeout) as response:
            await upload.send(response.iter_bytes(CHUNK_BYTES))
    except (anthropic.APIError, httpx2.HTTPError) as error:
        raise FileRelayError(
            f"couldn't download {code_span(meta.filename)} from the container: {_api_reason(error)}"
        ) from error
    await upload.complete(channel_id, thread_ts)
    return RelayedFile(file_id=meta.id, filename=meta.filename, size=meta.size_bytes)


async def relay_outputs_as_zip(
    claude: anthropic.AsyncAnthropic,
    slack: AsyncWebClient,
    http: aiohttp.ClientSession,
    file_ids: list[str],
    *,
    channel_id: str,
    thread_ts: str | None,
    skip: Collection[tuple[str, int]] = (),
    on_upload: Callable[[str], Awaitable[None]] | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[str]:
    """Many files the code produced as one zip (built on disk), posted with a listing of what
    it holds. Returns a line per file left out; raises FileRelayError when the zip itself
    cannot be shared."""
    problems: list[str] = []
    packed: list[FileMetadata] = []
    with tempfile.TemporaryFile() as spool:
        archive = zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        names: set[str] = set()
        for file_id in dict.fromkeys(file_ids):
            try:
                meta = await _metadata(claude, file_id, timeout)
                if (meta.filename, meta.size_bytes) in skip:
                    continue
                if sum(m.size_bytes for m in packed) + meta.size_bytes > SLACK_UPLOAD_LIMIT_BYTES:
                    raise FileRelayError(f"{code_span(meta.filename)} did not fit in the zip under Slack's upload limit.")
                await _add_to_zip(archive, names, meta, claude, timeout)
            except FileRelayError as error:
                problems.append(str(error))
                continue
            packed.append(meta)
        await asyncio.to_thread(archive.close)
        if not packed:
            return problems
        size = await asyncio.to_thread(spool.tell)
        await asyncio.to_thread(spool.seek, 0)
        upload = _Upload(slack, http, ZIP_NAME, size, timeout)
        await upload.open(on_upload)
        await upload.send(_read_chunks(spool))
        await upload.complete(channel_id, thread_ts, comment=zip_listing(packed))
    return problems


async def _metadata(claude: anthropic.AsyncAnthropic, file_id: str, timeout: float) -> FileMetadata:
    try:
        return await claude.files.retrieve_metadata(file_id, timeout=timeout)
    except anthropic.APIError as error:
        raise FileRelayError(f"couldn't read file `{file_id}` from the container: {_api_reason(error)}") from error


def _api_reason(error: anthropic.APIError | httpx2.HTTPError) -> str:
    if isinstance(error, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return "the Files API stopped answering."
    return escape_mrkdwn(str(error))


class _Upload:
    """One file into Slack: an upload URL, the bytes, then completion (the three-step upload)."""

    def __init__(self, slack: AsyncWebClient, http: aiohttp.ClientSession, filename: str, size: int, timeout: float):
        self.slack, self.http = slack, http
        self.filename, self.size, self.timeout = filename, size, timeout
        self.file_id = ""
        self.url = ""

    async def open(self, on_upload: Callable[[str], Awaitable[None]] | None = None) -> None:
        answer = await _within(
            self.timeout,
            self.slack.files_getUploadURLExternal(filename=self.filename, length=self.size),
            f"couldn't upload {code_span(self.filename)}",
        )
        self.file_id, self.url = str(answer["file_id"]), str(answer["upload_url"])
        if on_upload is not None:
            await on_upload(self.file_id)

    async def send(self, chunks: AsyncIterator[bytes]) -> None:
        body = _CheckedBody(chunks, self.size)
        # No overall limit (a big file takes a while); a pause longer than `timeout` ends it.
        limit = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
        try:
            async with self.http.post(
                self.url,
                data=body.chunks(),
                headers={"Content-Length": str(self.size), "Content-Type": "application/octet-stream"},
                timeout=limit,
            ) as posted:
                if posted.status != 200:
                    raise FileRelayError(f"Slack refused the upload of {code_span(self.filename)} ({posted.status}).")
        except (aiohttp.ClientError, TimeoutError) as error:
            # aiohttp reports a failing body as a connection error; name the side that failed.
            if body.error is not None:
                if isinstance(body.error, (anthropic.APIError, httpx2.HTTPError)):
                    raise FileRelayError(
                        f"couldn't download {code_span(self.filename)} from the container: {_api_reason(body.error)}"
                    ) from body.error
                raise FileRelayError(
                    f"couldn't copy {code_span(self.filename)}: {escape_mrkdwn(str(body.error))}"
                ) from body.error
            if isinstance(error, TimeoutError):
                raise FileRelayError(
                    f"couldn't upload {code_span(self.filename)}: Slack stopped answering for {self.timeout:g} seconds."
                ) from error
            raise FileRelayError(f"couldn't upload {code_span(self.filename)} to Slack: {escape_mrkdwn(str(error))}") from error

    async def complete(self, channel_id: str, thread_ts: str | None, comment: str | None = None) -> None:
        await _within(
            self.timeout,
            self.slack.files_completeUploadExternal(
                files=[{"id": self.file_id, "title": defuse_mentions(self.filename)}],
                channel_id=channel_id,
                thread_ts=thread_ts,
                initial_comment=comment,
            ),
            f"couldn't finish the upload of {code_span(self.filename)}",
        )


class _CheckedBody:
    """Passes download chunks to the upload, keeping any download failure for the report."""

    def __init__(self, chunks: AsyncIterator[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size
        self.error: BaseException | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in self._chunks:
                sent += len(chunk)
                if sent > self._size:
                    raise FileRelayError("the file grew while it was being copied")
                yield chunk
        except Exception as error:
            self.error = error
            raise


async def _add_to_zip(
    archive: zipfile.ZipFile, names: set[str], meta: FileMetadata, claude: anthropic.AsyncAnthropic, timeout: float
) -> None:
    """The file goes in only once it is downloaded whole: a zip entry, once begun, stays."""
    with tempfile.TemporaryFile() as whole:
        try:
            async with claude.files.with_streaming_response.download(meta.id, timeout=timeout) as response:
                async for chunk in response.iter_bytes(CHUNK_BYTES):
                    await asyncio.to_thread(whole.write, chunk)
        except (anthropic.APIError, httpx2.HTTPError) as error:
            raise FileRelayError(
                f"couldn't download {code_span(meta.filename)} from the container: {_api_reason(error)}"
            ) from error
        await asyncio.to_thread(whole.seek, 0)
        with archive.open(_unique(meta.filename, names), "w", force_zip64=True) as target:
            await asyncio.to_thread(shutil.copyfileobj, whole, target, CHUNK_BYTES)


def zip_listing(files: list[FileMetadata]) -> str:
    """The message that comes with a zip: how many files, and their names and sizes."""
    lines = [f"{len(files)} files from this turn, in one zip:"]
    lines += [f"• {code_span(m.filename)} ({_size(m.size_bytes)})" for m in files[:MAX_LISTED_FILES]]
    if len(files) > MAX_LISTED_FILES:
        lines.append(f"…and {len(files) - MAX_LISTED_FILES} more.")
    return "\n".join(lines)


def _unique(filename: str, taken: set[str]) -> str:
    """A name inside the zip: the file's own, numbered when two files share it."""
    path = PurePosixPath(filename.lstrip("/") or "file")
    name, n = str(path), 1
    while name in taken:
        n += 1
        name = str(path.with_name(f"{path.stem} ({n}){path.suffix}"))
    taken.add(name)
    return name


async def _read_chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool.read, CHUNK_BYTES):
        yield chunk


def is_slack_file_url(url: str, api_url: str) -> bool:
    """Whether the bot token may go to `url`: Slack's own file hosts only (those of slack.com,
    or of the `SLACK_API_URL` host's domain, as for GovSlack's slack-gov.com)."""
    target, api = urlparse(url), urlparse(api_url)
    host, api_host = (target.hostname or "").lower(), (api.hostname or "").lower()
    if not host or not api_host or target.scheme not in ("https", api.scheme):
        return False
    if host == api_host:
        return True
    labels = api_host.split(".")
    if len(labels) < 2 or labels[-1].isdigit():  # an address, not a domain: that host alone
        return False
    domain = ".".join(labels[-2:])
    return host == domain or host.endswith("." + domain)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _size(size: int) -> str:
    return f"{size:,} bytes" if size < 1024 * 1024 else _megabytes(size)


@dataclass(frozen=True)
class ContainerFile:
    """A user's Slack file, now in the Files API and ready for a `container_upload` block."""

    file_id: str
    filename: str
    size: int


async def relay_slack_file_to_claude(
    slack_file: dict[str, Any],
    *,
    slack: AsyncWebClient,
    claude: anthropic.AsyncAnthropic,
    http: aiohttp.ClientSession,
    max_bytes: int,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> ContainerFile:
    """Download a file a user shared (bot token) and upload it through the Files API.

    The bytes go through a temporary file on disk, never all in memory at once.
    """
    if slack_file.get("file_access") == "check_file_info" and slack_file.get("id"):
        info = await _within(timeout, slack.files_info(file=slack_file["id"]), "couldn't look up a shared file")
        slack_file = info["file"]
    name = str(slack_file.get("name") or slack_file.get("title") or slack_file.get("id") or "file")
    url = slack_file.get("url_private_download") or slack_file.get("url_private")
    if not url or slack_file.get("mode") in ("external", "tombstone"):
        raise FileRelayError(f"{code_span(name)} is not stored in Slack (an external or deleted file), so I can't read it.")
    if not is_slack_file_url(str(url), str(slack.base_url)):
        raise FileRelayError(f"{code_span(name)} is not on a Slack file host, so I won't fetch it with the app's token.")
    size = int(slack_file.get("size") or 0)
    if size > max_bytes:
        raise FileRelayError(f"{code_span(name)} is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}.")
    mime_type = str(slack_file.get("mimetype") or "application/octet-stream")
    with tempfile.TemporaryFile() as spool:
        received = await _download_to(spool, http, url, slack.token or "", name, mime_type, max_bytes, timeout)
        await asyncio.to_thread(spool.seek, 0)
        try:
            uploaded = await claude.files.upload(file=(name, spool, mime_type), timeout=timeout)
        except anthropic.APIError as error:
            raise FileRelayError(f"couldn't hand {code_span(name)} to Claude: {_api_reason(error)}") from error
    return ContainerFile(file_id=uploaded.id, filename=name, size=received)


async def _download_to(
    spool: IO[bytes],
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    name: str,
    mime_type: str,
    max_bytes: int,
    timeout: float,
) -> int:
    limit = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
    try:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=limit) as response:
            if response.status != 200:
                raise FileRelayError(f"Slack answered {response.status} when I downloaded {code_span(name)}.")
            # A page where the file's own type is something else: Slack's sign-in page.
            if response.content_type == "text/html" and mime_type != "text/html":
                raise FileRelayError(
                    f"Slack sent a sign-in page instead of {code_span(name)}: the app needs the `files:read`"
                    " scope (reinstall it from the manifest)."
                )
            received = 0
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    raise FileRelayError(f"{code_span(name)} is larger than the limit of {_megabytes(max_bytes)}.")
                await asyncio.to_thread(spool.write, chunk)
            return received
    except TimeoutError as error:  # aiohttp's timeouts are TimeoutErrors (and some ClientErrors)
        raise FileRelayError(
            f"couldn't download {code_span(name)} from Slack: no data for {timeout:g} seconds."
        ) from error
    except aiohttp.ClientError as error:
        raise FileRelayError(f"couldn't download {code_span(name)} from Slack: {escape_mrkdwn(str(error))}") from error


def thread_file_ids(history: list[dict[str, Any]]) -> list[str]:
    """Every Files API file of a thread: what users put into the container, and what code made."""
    made = [file_id for block in _blocks(history) for file_id in output_file_ids(block)]
    return list(dict.fromkeys([*uploaded_file_ids(history), *made]))


def uploaded_file_ids(messages: list[dict[str, Any]]) -> list[str]:
    """Files users put into the container (`container_upload` blocks), in order."""
    return [
        str(block["file_id"])
        for block in _blocks(messages)
        if block.get("type") == "container_upload" and block.get("file_id")
    ]


def output_file_ids(block: dict[str, Any]) -> list[str]:
    """File ids the code produced, from a tool result's `*_output` entries."""
    content = block.get("content")
    if not str(block.get("type", "")).endswith("_tool_result") or not isinstance(content, dict):
        return []
    outputs = content.get("content") or []
    return [str(item["file_id"]) for item in outputs if isinstance(item, dict) and item.get("file_id")]


def _blocks(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every content block of the messages, in order."""
    return [
        block
        for message in messages
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict)
    ]


async def delete_files(claude: anthropic.AsyncAnthropic, file_ids: list[str]) -> int:
    """Delete files from the Files API; one already gone counts as deleted. Returns how many went."""
    deleted = 0
    for file_id in file_ids:
        try:
            await claude.files.delete(file_id)
            deleted += 1
        except anthropic.NotFoundError:
            deleted += 1
        except anthropic.APIError as error:
            logger.warning("could not delete file %s: %s", file_id, error)
    return deleted
