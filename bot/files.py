"""Relaying files between Slack and the container, streamed in chunks so memory stays flat.

`files_upload_v2` would read a whole file into memory; here the same three steps
(`files.getUploadURLExternal`, POST the bytes, `files.completeUploadExternal`) are done with
the bytes flowing straight from the Files API download into the upload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp
import anthropic
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
) -> RelayedFile:
    """Copy one file the code produced from the Files API into the thread, under its real name."""
    try:
        meta = await claude.files.retrieve_metadata(file_id)
    except anthropic.APIError as error:
        raise FileRelayError(f"couldn't read file `{file_id}` from the container: {error}") from error
    if meta.size_bytes > upload_limit:
        raise FileRelayError(
            f"`{meta.filename}` is {_megabytes(meta.size_bytes)}, over Slack's upload limit"
            f" of {_megabytes(upload_limit)}; it stays in the container."
        )
    upload = await slack.files_getUploadURLExternal(filename=meta.filename, length=meta.size_bytes)
    try:
        async with claude.files.with_streaming_response.download(file_id) as response:
            async with http.post(
                upload["upload_url"],
                data=_limited(response.iter_bytes(CHUNK_BYTES), meta.size_bytes),
                headers={
                    "Content-Length": str(meta.size_bytes),
                    "Content-Type": "application/octet-stream",
                },
            ) as posted:
                if posted.status != 200:
                    raise FileRelayError(f"Slack refused the upload of `{meta.filename}` ({posted.status}).")
    except anthropic.APIError as error:
        raise FileRelayError(f"couldn't download `{meta.filename}` from the container: {error}") from error
    except aiohttp.ClientError as error:
        raise FileRelayError(f"couldn't upload `{meta.filename}` to Slack: {error}") from error
    await slack.files_completeUploadExternal(
        files=[{"id": upload["file_id"], "title": meta.filename}],
        channel_id=channel_id,
        thread_ts=thread_ts,
    )
    return RelayedFile(file_id=file_id, filename=meta.filename, size=meta.size_bytes)


async def _limited(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Pass chunks through, refusing a body that would not match its announced length."""
    sent = 0
    async for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            raise FileRelayError("the file grew while it was being copied")
        yield chunk


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"

