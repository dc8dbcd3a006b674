"""Files the code produced, from the Files API into their thread: one by one, or many as one zip.

A file that fails becomes one line for the thread, never a failed turn.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

import aiohttp
import anthropic
import httpx2
from anthropic.types import FileMetadata
from slack_sdk.web.async_client import AsyncWebClient

from ..errors import FileRelayError
from .slack_upload import SlackUpload, api_reason, complete_uploads, download_failed
from .text import code_span

CHUNK_BYTES = 256 * 1024
# Slack refuses uploads above 1 GB.
SLACK_UPLOAD_LIMIT_BYTES = 1024 * 1024 * 1024
ZIP_NAME = "files.zip"
# Lines of a zip's listing shown in the thread; the zip itself holds every file.
MAX_LISTED_FILES = 50


@dataclass(frozen=True)
class RelayedFile:
    file_id: str
    filename: str
    size: int


@dataclass(frozen=True)
class StagedFile:
    """A file whose bytes are in Slack, waiting to be shared in the thread."""

    upload: SlackUpload
    relayed: RelayedFile


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
    timeout: float,
) -> RelayedFile | None:
    """Copy one file the code produced into the thread (`stage_output`, then its share)."""
    staged = await stage_output(
        claude, slack, http, file_id, upload_limit=upload_limit, skip=skip, on_upload=on_upload, timeout=timeout
    )
    if staged is None:
        return None
    await complete_uploads(slack, [staged.upload], channel_id, thread_ts, timeout)
    return staged.relayed


async def stage_output(
    claude: anthropic.AsyncAnthropic,
    slack: AsyncWebClient,
    http: aiohttp.ClientSession,
    file_id: str,
    *,
    upload_limit: int = SLACK_UPLOAD_LIMIT_BYTES,
    skip: Collection[tuple[str, int]] = (),
    on_upload: Callable[[str], Awaitable[None]] | None = None,
    timeout: float,
) -> StagedFile | None:
    """Copy one file the code produced from the Files API into Slack, under its real name,
    not yet shared (`complete_uploads` shares it, with the turn's other files).

    Returns None for a file in `skip` (name, size): a user's own file copied back out.
    `on_upload` learns the Slack file id before the upload is completed, so a crash in
    between can be checked later instead of uploading the file twice.
    """
    meta = await _metadata(claude, file_id, timeout)
    if (meta.filename, meta.size_bytes) in skip:
        return None
    if meta.size_bytes > upload_limit:
        raise FileRelayError(
            f"{code_span(meta.filename)} is {megabytes(meta.size_bytes)}, over Slack's upload limit"
            f" of {megabytes(upload_limit)}; it stays in the container."
        )
    upload = SlackUpload(slack, http, meta.filename, meta.size_bytes, timeout)
    await upload.open(on_upload)
    try:
        async with claude.files.with_streaming_response.download(meta.id, timeout=timeout) as response:
            await upload.send(response.iter_bytes(CHUNK_BYTES))
    except (anthropic.APIError, httpx2.HTTPError) as error:
        raise download_failed(meta.filename, error) from error
    return StagedFile(upload, RelayedFile(file_id=meta.id, filename=meta.filename, size=meta.size_bytes))


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
    timeout: float,
) -> tuple[list[str], list[RelayedFile], str]:
    """Many files the code produced as one zip (built on disk), posted with a listing of what
    it holds. Returns a line per file left out, the files in the zip, and the zip's Slack file
    id; raises FileRelayError when the zip itself cannot be shared."""
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
                    name = code_span(meta.filename)
                    raise FileRelayError(f"{name} did not fit in the zip under Slack's upload limit.")
                await _add_to_zip(archive, names, meta, claude, timeout)
            except FileRelayError as error:
                problems.append(str(error))
                continue
            packed.append(meta)
        await asyncio.to_thread(archive.close)
        if not packed:
            return problems, [], ""
        size = await asyncio.to_thread(spool.tell)
        await asyncio.to_thread(spool.seek, 0)
        upload = SlackUpload(slack, http, ZIP_NAME, size, timeout)
        await upload.open(on_upload)
        await upload.send(read_chunks(spool))
        await complete_uploads(slack, [upload], channel_id, thread_ts, timeout, comment=zip_listing(packed))
    return problems, [RelayedFile(meta.id, meta.filename, meta.size_bytes) for meta in packed], upload.file_id


async def _metadata(claude: anthropic.AsyncAnthropic, file_id: str, timeout: float) -> FileMetadata:
    try:
        return await claude.files.retrieve_metadata(file_id, timeout=timeout)
    except anthropic.APIError as error:
        raise FileRelayError(f"couldn't read file `{file_id}` from the container: {api_reason(error)}") from error


async def _add_to_zip(
    archive: zipfile.ZipFile, names: set[str], meta: FileMetadata, claude: anthropic.AsyncAnthropic, timeout: float
) -> None:
    """The file goes in only once it is downloaded whole: a zip entry, once begun, stays."""
    with tempfile.TemporaryFile() as whole:
        await download_output(claude, meta.id, meta.filename, whole, timeout)
        await asyncio.to_thread(whole.seek, 0)
        with archive.open(unique_name(meta.filename, names), "w", force_zip64=True) as target:
            await asyncio.to_thread(shutil.copyfileobj, whole, target, CHUNK_BYTES)


async def download_output(
    claude: anthropic.AsyncAnthropic, file_id: str, filename: str, into: IO[bytes], timeout: float
) -> None:
    """A file the code produced, from the Files API onto disk, chunk by chunk."""
    try:
        async with claude.files.with_streaming_response.download(file_id, timeout=timeout) as response:
            async for chunk in response.iter_bytes(CHUNK_BYTES):
                await asyncio.to_thread(into.write, chunk)
    except (anthropic.APIError, httpx2.HTTPError) as error:
        raise download_failed(filename, error) from error


def zip_listing(files: list[FileMetadata]) -> str:
    """The message that comes with a zip: how many files, and their names and sizes."""
    lines = [f"{len(files)} files from this turn, in one zip:"]
    lines += [f"• {code_span(m.filename)} ({size_text(m.size_bytes)})" for m in files[:MAX_LISTED_FILES]]
    if len(files) > MAX_LISTED_FILES:
        lines.append(f"…and {len(files) - MAX_LISTED_FILES} more.")
    return "\n".join(lines)


def unique_name(filename: str, taken: set[str]) -> str:
    """A name inside the zip: the file's own, numbered when two files share it."""
    path = PurePosixPath(filename.lstrip("/") or "file")
    name, n = str(path), 1
    while name in taken:
        n += 1
        name = str(path.with_name(f"{path.stem} ({n}){path.suffix}"))
    taken.add(name)
    return name


async def read_chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(spool.read, CHUNK_BYTES):
        yield chunk


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def size_text(size: int) -> str:
    return f"{size:,} bytes" if size < 1024 * 1024 else megabytes(size)


