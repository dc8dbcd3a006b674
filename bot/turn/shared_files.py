"""Files people share with a message, from Slack into the Files API, ready for the container.

The bot token goes only to Slack's own file hosts; the bytes go through a temporary file on
disk, never all in memory at once; a file that cannot go in is one line for the thread.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import asdict, dataclass
from typing import IO, Any
from urllib.parse import urlparse

import aiohttp
import anthropic
from slack_sdk.web.async_client import AsyncWebClient

from storage import Store

from ..errors import SLACK_ERRORS, FileRelayError
from ..ops.metrics import Metrics
from ..outbound.slack_upload import api_reason, within
from ..outbound.text import code_span, escape_mrkdwn
from ..outbound.uploads import CHUNK_BYTES, megabytes
from .context import TurnContext


@dataclass(frozen=True)
class ContainerFile:
    """A user's Slack file, now in the Files API and ready for a `container_upload` block."""

    file_id: str
    filename: str
    size: int
    slack_file_id: str | None = None


async def relay_slack_file_to_claude(
    slack_file: dict[str, Any],
    *,
    slack: AsyncWebClient,
    claude: anthropic.AsyncAnthropic,
    http: aiohttp.ClientSession,
    max_bytes: int,
    timeout: float,
) -> ContainerFile:
    """Download a file a user shared (bot token) and upload it through the Files API.

    The bytes go through a temporary file on disk, never all in memory at once.
    """
    if slack_file.get("file_access") == "check_file_info" and slack_file.get("id"):
        info = await within(timeout, slack.files_info(file=slack_file["id"]), "couldn't look up a shared file")
        slack_file = info["file"]
    name = str(slack_file.get("name") or slack_file.get("title") or slack_file.get("id") or "file")
    url = slack_file.get("url_private_download") or slack_file.get("url_private")
    if not url or slack_file.get("mode") in ("external", "tombstone"):
        raise FileRelayError(
            f"{code_span(name)} is not stored in Slack (an external or deleted file), so I can't read it."
        )
    if not is_slack_file_url(str(url), str(slack.base_url)):
        raise FileRelayError(
            f"{code_span(name)} is not on a Slack file host, so I won't fetch it with the app's token."
        )
    size = int(slack_file.get("size") or 0)
    if size > max_bytes:
        raise FileRelayError(f"{code_span(name)} is {megabytes(size)}; the limit is {megabytes(max_bytes)}.")
    mime_type = str(slack_file.get("mimetype") or "application/octet-stream")
    with tempfile.TemporaryFile() as spool:
        received = await download_to(spool, http, url, slack.token or "", name, mime_type, max_bytes, timeout)
        await asyncio.to_thread(spool.seek, 0)
        try:
            uploaded = await claude.files.upload(file=(name, spool, mime_type), timeout=timeout)
        except anthropic.APIError as error:
            raise FileRelayError(f"couldn't hand {code_span(name)} to Claude: {api_reason(error)}") from error
    return ContainerFile(file_id=uploaded.id, filename=name, size=received, slack_file_id=_string(slack_file.get("id")))


async def download_to(
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
                    raise FileRelayError(f"{code_span(name)} is larger than the limit of {megabytes(max_bytes)}.")
                await asyncio.to_thread(spool.write, chunk)
            return received
    except TimeoutError as error:  # aiohttp's timeouts are TimeoutErrors (and some ClientErrors)
        raise FileRelayError(
            f"couldn't download {code_span(name)} from Slack: no data for {timeout:g} seconds."
        ) from error
    except aiohttp.ClientError as error:
        raise FileRelayError(f"couldn't download {code_span(name)} from Slack: {escape_mrkdwn(str(error))}") from error


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


class FileIntake:
    """The files shared with a turn's message, into the Files API; what could not go is said."""

    def __init__(
        self, claude: anthropic.AsyncAnthropic, http: aiohttp.ClientSession, metrics: Metrics, store: Store, *,
        max_bytes: int, timeout: float,
    ) -> None:
        self.claude = claude
        self.store = store
        self.http = http
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def take_in(self, turn: TurnContext) -> list[ContainerFile]:
        arrived: list[ContainerFile] = []
        refused: list[str] = []
        # An earlier attempt's copies are used again: a retry never leaves a copy behind.
        earlier = {
            str(u["slack_id"]): ContainerFile(u["file_id"], u["filename"], u["size"], str(u["slack_id"]))
            for u in turn.item.uploads
        }
        for slack_file in turn.item.files:
            if (copy := earlier.get(str(slack_file.get("id")))) is not None:
                arrived.append(copy)
                continue
            try:
                arrived.append(
                    await relay_slack_file_to_claude(
                        slack_file, slack=turn.workspace.client, claude=self.claude, http=self.http,
                        max_bytes=self.max_bytes, timeout=self.timeout,
                    )
                )
                noted = {"slack_id": str(slack_file.get("id")), **asdict(arrived[-1])}
                await self.store.note_upload(turn.item.id, noted)
                self.metrics.file_relayed("to_container", arrived[-1].size)
            except FileRelayError as error:
                refused.append(str(error))
            except SLACK_ERRORS as error:
                refused.append(f"couldn't look up a shared file: {escape_mrkdwn(str(error))}")
        await turn.say_problems("Some files couldn't go into the container:", refused)
        return arrived


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
