"""Relaying files between Slack and the container, streamed in chunks so memory stays flat.

`files_upload_v2` would read a whole file into memory; here the same three steps
(`files.getUploadURLExternal`, POST the bytes, `files.completeUploadExternal`) are done with
the bytes flowing straight from the Files API download into the upload.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlparse

import aiohttp
import anthropic
import httpx2
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
# Slack refuses uploads above 1 GB.
SLACK_UPLOAD_LIMIT_BYTES = 1024 * 1024 * 1024


class FileRelayError(Exception):
    """A file could not be relayed; the message is meant for the thread."""


@dataclass(frozen=True)
class RelayedFile:
    file_id: str
    filename: str
    size: int


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
) -> RelayedFile | None:
    """Copy one file the code produced from the Files API into the thread, under its real name.

    Returns None for a file in `skip` (name, size): a user's own file copied back out.
    `on_upload` learns the Slack file id before the upload is completed, so a crash in
    between can be checked later instead of uploading the file twice.
    """
    try:
        meta = await claude.files.retrieve_metadata(file_id)
    except anthropic.APIError as error:
        raise FileRelayError(f"couldn't read file `{file_id}` from the container: {error}") from error
    if (meta.filename, meta.size_bytes) in skip:
        return None
    if meta.size_bytes > upload_limit:
        raise FileRelayError(
            f"`{meta.filename}` is {_megabytes(meta.size_bytes)}, over Slack's upload limit"
            f" of {_megabytes(upload_limit)}; it stays in the container."
        )
    upload = await slack.files_getUploadURLExternal(filename=meta.filename, length=meta.size_bytes)
    if on_upload is not None:
        await on_upload(str(upload["file_id"]))
    body: _CheckedBody | None = None
    try:
        async with claude.files.with_streaming_response.download(file_id) as response:
            body = _CheckedBody(response.iter_bytes(CHUNK_BYTES), meta.size_bytes)
            async with http.post(
                upload["upload_url"],
                data=body.chunks(),
                headers={
                    "Content-Length": str(meta.size_bytes),
                    "Content-Type": "application/octet-stream",
                },
            ) as posted:
                if posted.status != 200:
                    raise FileRelayError(f"Slack refused the upload of `{meta.filename}` ({posted.status}).")
    except (anthropic.APIError, httpx2.HTTPError) as error:
        raise FileRelayError(f"couldn't download `{meta.filename}` from the container: {error}") from error
    except aiohttp.ClientError as error:
        # aiohttp reports a failing body as a connection error; name the side that failed.
        if body is not None and body.error is not None:
            raise FileRelayError(
                f"couldn't download `{meta.filename}` from the container: {body.error}"
            ) from body.error
        raise FileRelayError(f"couldn't upload `{meta.filename}` to Slack: {error}") from error
    await slack.files_completeUploadExternal(
        files=[{"id": upload["file_id"], "title": meta.filename}],
        channel_id=channel_id,
        thread_ts=thread_ts,
    )
    return RelayedFile(file_id=file_id, filename=meta.filename, size=meta.size_bytes)


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
) -> ContainerFile:
    """Download a file a user shared (bot token) and upload it through the Files API.

    The bytes go through a temporary file on disk, never all in memory at once.
    """
    if slack_file.get("file_access") == "check_file_info" and slack_file.get("id"):
        slack_file = (await slack.files_info(file=slack_file["id"]))["file"]
    name = str(slack_file.get("name") or slack_file.get("title") or slack_file.get("id") or "file")
    url = slack_file.get("url_private_download") or slack_file.get("url_private")
    if not url or slack_file.get("mode") in ("external", "tombstone"):
        raise FileRelayError(f"`{name}` is not stored in Slack (an external or deleted file), so I can't read it.")
    if not is_slack_file_url(str(url), str(slack.base_url)):
        raise FileRelayError(f"`{name}` is not on a Slack file host, so I won't fetch it with the app's token.")
    size = int(slack_file.get("size") or 0)
    if size > max_bytes:
        raise FileRelayError(f"`{name}` is {_megabytes(size)}; the limit is {_megabytes(max_bytes)}.")
    with tempfile.TemporaryFile() as spool:
        received = await _download_to(spool, http, url, slack.token or "", name, max_bytes)
        await asyncio.to_thread(spool.seek, 0)
        mime_type = str(slack_file.get("mimetype") or "application/octet-stream")
        try:
            uploaded = await claude.files.upload(file=(name, spool, mime_type))
        except anthropic.APIError as error:
            raise FileRelayError(f"couldn't hand `{name}` to Claude: {error}") from error
    return ContainerFile(file_id=uploaded.id, filename=name, size=received)


async def _download_to(
    spool: IO[bytes], http: aiohttp.ClientSession, url: str, token: str, name: str, max_bytes: int
) -> int:
    try:
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                raise FileRelayError(f"Slack answered {response.status} when I downloaded `{name}`.")
            if response.content_type == "text/html":
                raise FileRelayError(
                    f"Slack sent a sign-in page instead of `{name}`: the app needs the `files:read`"
                    " scope (reinstall it from the manifest)."
                )
            received = 0
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    raise FileRelayError(f"`{name}` is larger than the limit of {_megabytes(max_bytes)}.")
                await asyncio.to_thread(spool.write, chunk)
            return received
    except aiohttp.ClientError as error:
        raise FileRelayError(f"couldn't download `{name}` from Slack: {error}") from error


def thread_file_ids(history: list[dict[str, Any]]) -> list[str]:
    """Every Files API file of a thread: what users put into the container, and what code made."""
    found: dict[str, None] = {}
    for message in history:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "container_upload" and block.get("file_id"):
                found[str(block["file_id"])] = None
            result = block.get("content")
            if str(block.get("type", "")).endswith("_tool_result") and isinstance(result, dict):
                for output in result.get("content") or []:
                    if isinstance(output, dict) and output.get("file_id"):
                        found[str(output["file_id"])] = None
    return list(found)


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
