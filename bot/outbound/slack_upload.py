"""The three steps of putting a file into Slack, with the bytes streamed through, never all in memory.

`files_upload_v2` would read a whole file into memory; here `files.getUploadURLExternal`, a POST
of the bytes and `files.completeUploadExternal` are done with the bytes flowing straight from
their source into the upload. Every step has a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aiohttp
import anthropic
import httpx2
from slack_sdk.web.async_client import AsyncWebClient

from ..errors import FileRelayError
from .text import code_span, defuse_mentions, escape_mrkdwn

T = TypeVar("T")


async def within(seconds: float, step: Awaitable[T], what: str) -> T:
    """One API call of a transfer, bounded: a silent server ends as a clear FileRelayError."""
    try:
        async with asyncio.timeout(seconds):
            return await step
    except TimeoutError:
        raise FileRelayError(f"{what}: no answer within {seconds:g} seconds.") from None


def api_reason(error: anthropic.APIError | httpx2.HTTPError) -> str:
    if isinstance(error, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return "the Files API stopped answering."
    return escape_mrkdwn(str(error))


def download_failed(filename: str, error: BaseException) -> FileRelayError:
    """A file that could not be read from the Files API, in words for the thread."""
    if isinstance(error, (anthropic.APIError, httpx2.HTTPError)):
        return FileRelayError(f"couldn't download {code_span(filename)} from the container: {api_reason(error)}")
    return FileRelayError(f"couldn't copy {code_span(filename)}: {escape_mrkdwn(str(error))}")


class SlackUpload:
    """One file into Slack: an upload URL, the bytes, then completion (the three-step upload)."""

    def __init__(self, slack: AsyncWebClient, http: aiohttp.ClientSession, filename: str, size: int, timeout: float):
        self.slack, self.http = slack, http
        self.filename, self.size, self.timeout = filename, size, timeout
        self.file_id = ""
        self.url = ""

    async def open(self, on_upload: Callable[[str], Awaitable[None]] | None = None) -> None:
        answer = await within(
            self.timeout,
            self.slack.files_getUploadURLExternal(filename=self.filename, length=self.size),
            f"couldn't upload {code_span(self.filename)}",
        )
        self.file_id, self.url = str(answer["file_id"]), str(answer["upload_url"])
        if on_upload is not None:
            await on_upload(self.file_id)

    async def send(self, chunks: AsyncIterator[bytes]) -> None:
        body = CheckedBody(chunks, self.size)
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
                raise download_failed(self.filename, body.error) from body.error
            if isinstance(error, TimeoutError):
                raise FileRelayError(
                    f"couldn't upload {code_span(self.filename)}: Slack stopped answering for {self.timeout:g} seconds."
                ) from error
            reason = escape_mrkdwn(str(error))
            raise FileRelayError(f"couldn't upload {code_span(self.filename)} to Slack: {reason}") from error



async def complete_uploads(
    slack: AsyncWebClient, uploads: list[SlackUpload], channel_id: str, thread_ts: str | None, timeout: float,
    comment: str | None = None,
) -> None:
    """Share uploaded files in the thread, all in one `files.completeUploadExternal` call."""
    names = ", ".join(code_span(upload.filename) for upload in uploads)
    await within(
        timeout,
        slack.files_completeUploadExternal(
            files=[{"id": upload.file_id, "title": defuse_mentions(upload.filename)} for upload in uploads],
            channel_id=channel_id,
            thread_ts=thread_ts,
            initial_comment=comment,
        ),
        f"couldn't finish the upload of {names}",
    )


class CheckedBody:
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
