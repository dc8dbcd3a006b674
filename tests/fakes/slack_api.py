"""A fake Slack Web API (plus file hosting, upload URLs and response_urls) for tests.

`FakeSlack` is an aiohttp server on 127.0.0.1 that the real `slack_sdk` clients talk to
(`AsyncWebClient(base_url=await fake.start())`). It records every call, keeps the messages
the bot posts, and lets a test inject failures and latency. Module functions build signed
request bodies to drive a Bolt app the way Slack does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml
from aiohttp import BodyPartReader, WSMsgType, web

from .faults import Faults
from .slack_installs import Installation, SlackInstalls
from .slack_rules import (
    SUGGESTED_PROMPTS_LIMIT,
    TRIGGER_SECONDS,
    RateTiers,
    manifest_problems,
    message_size_error,
    modal_problem,
)

CHUNK = 64 * 1024
SLACK_TS = re.compile(r"\d{10}\.\d{6}")
KEEP_LIMIT = 10 * 1024 * 1024
"""Uploaded bodies smaller than this are kept in memory (`content`); larger ones only hashed."""

_JSON_FIELDS = ("blocks", "attachments", "files", "chunks", "metadata", "prompts", "user_auth_blocks")
_TASK_STATUSES = ("pending", "in_progress", "complete", "error")
_CHUNK_TYPES = ("markdown_text", "task_update", "plan_update", "blocks")

# The bot scopes an install of manifest.yml is granted; `FakeSlack.scopes` can take some away.
# The app's bot scopes are what `manifest.yml` asks for: the app as the admin installs it.
MANIFEST = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifest.yml").read_text(encoding="utf-8"))
GRANTED_SCOPES = tuple(MANIFEST["oauth_config"]["scopes"]["bot"])
SUBSCRIBED_EVENTS = tuple(MANIFEST["settings"]["event_subscriptions"]["bot_events"])
CONFIG_TOKEN = "xoxe.xoxp-config"
"""The app configuration token `apps.manifest.*` takes."""
# The scope a Web API method needs; without it Slack answers `missing_scope`.
METHOD_SCOPES = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.startStream": "chat:write",
    "chat.appendStream": "chat:write",
    "chat.stopStream": "chat:write",
    "assistant.threads.setStatus": "assistant:write",
    "assistant.threads.setTitle": "assistant:write",
    "assistant.threads.setSuggestedPrompts": "assistant:write",
    "reactions.add": "reactions:write",
    "reactions.remove": "reactions:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "files.info": "files:read",
    "users.info": "users:read",
    "users.list": "users:read",
    "usergroups.users.list": "usergroups:read",
}

LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><meta charset="utf-8"><title>Slack</title></head>
<body><div id="page_contents"><h1>Sign in to Fake Workspace</h1>
<form id="signin_form" action="/" method="post"><input type="email" name="email">
<input type="password" name="password"><button id="signin_btn" type="submit">Sign in</button>
</form></div></body></html>
"""


def pattern_chunks(seed: str, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield `size` deterministic bytes derived from `seed`, `chunk` bytes at a time.

    Every chunk differs (it starts with its index), so lost, repeated or reordered chunks
    change the sha256.
    """
    digest = hashlib.sha256(seed.encode()).digest()
    index, left = 0, size
    while left > 0:
        unit = index.to_bytes(8, "big") + digest[:24]
        block = (unit * (chunk // len(unit) + 1))[: min(chunk, left)]
        yield block
        left -= len(block)
        index += 1


def pattern_sha256(seed: str, size: int) -> str:
    """sha256 hex of `pattern_chunks(seed, size)`."""
    h = hashlib.sha256()
    for block in pattern_chunks(seed, size):
        h.update(block)
    return h.hexdigest()


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps such as "1700000100.000100"."""
    sec, _, micro = ts.partition(".")
    return int(sec), int(micro or 0)


def rendered_text(msg: dict[str, Any]) -> str:
    """The text a person sees for a stored message.

    Streams: all markdown text appended so far. Normal messages: the `markdown` block's
    text, else section texts, else `text`.
    """
    if msg.get("stream"):
        return "".join(c.get("text", "") for c in msg.get("chunks") or [] if c.get("type") == "markdown_text")
    blocks = [b for b in msg.get("blocks") or [] if isinstance(b, dict)]
    markdown = [b.get("text", "") for b in blocks if b.get("type") == "markdown"]
    if markdown:
        return "\n".join(markdown)
    sections = [
        b["text"].get("text", "") for b in blocks if b.get("type") == "section" and isinstance(b.get("text"), dict)
    ]
    if sections:
        return "\n".join(sections)
    return msg.get("text") or ""


@dataclass
class SlackCall:
    """One Web API call as the fake received it."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    """When it arrived (`time.monotonic()`)."""


@dataclass
class _Failure:
    error: str
    times: int
    status: int
    headers: dict[str, str]
    text: bool = False


@dataclass
class _Blob:
    """A file's bytes: kept in memory, or generated from a seed on the fly."""

    size: int
    content: bytes | None = None
    seed: str = ""

    @cached_property
    def sha256(self) -> str:
        if self.content is None:
            return pattern_sha256(self.seed, self.size)
        return hashlib.sha256(self.content).hexdigest()

    def chunks(self) -> Iterator[bytes]:
        if self.content is None:
            yield from pattern_chunks(self.seed, self.size)
        else:
            for i in range(0, len(self.content), CHUNK):
                yield self.content[i : i + CHUNK]


@dataclass
class _PendingUpload:
    file_id: str
    filename: str
    length: int
    size: int = 0
    sha256: str = hashlib.sha256(b"").hexdigest()
    content: bytes | None = b""
    extra: dict[str, Any] = field(default_factory=dict)


class FakeSlack:
    """A fake Slack workspace with one bot user; see the module docstring."""

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.calls: list[SlackCall] = []
        self.messages: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.reactions: list[tuple[str, str, str]] = []
        self.uploads: list[dict[str, Any]] = []
        self.responses: dict[str, list[Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.directory: list[str] = []
        """More of the workspace's people, as `users.list` lists them (besides those in `users`)."""
        self.channels: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        """Members by conversation. Unset: a channel has the bot and U1–U3; DM `Dn` is with `Un`."""
        self.usergroups: dict[str, list[str]] = {}
        self.home_views: dict[str, dict[str, Any]] = {}
        self.modals: list[dict[str, Any]] = []
        """Views opened with `views.open`, oldest first."""
        self._exchanged_triggers: set[str] = set()
        self.downloads: list[dict[str, Any]] = []
        self.app_token = "xapp-test"
        self.socket_acks: list[dict[str, Any]] = []
        self._sockets: list[web.WebSocketResponse] = []
        self.scopes: list[str] = list(GRANTED_SCOPES)
        self.installs = SlackInstalls(team_id, bot_token, bot_user_id, bot_id, GRANTED_SCOPES)
        """Every install of the app (the first: `bot_token`'s, in `team_id`), its tokens and workspaces."""
        self._caller: Installation = self.installs.installed[0]
        """The bot token's scopes: sent in `x-oauth-scopes`, and required per `METHOD_SCOPES`."""
        self.files_read_scope = True
        """False: the app lacks `files:read`, so downloads answer Slack's sign-in page."""
        self.strict_streams = True
        """chat.startStream in a channel (C…/G…) needs recipient_user_id and recipient_team_id."""
        self.stream_max_seconds: float | None = None
        """Slack ends a stream server-side this long after it started (None: never)."""
        self.stream_max_pause: float | None = None
        """... or after this long without an append (None: never)."""
        self.rate_limit_every = 0
        """Every Nth Web API call answers HTTP 429 `ratelimited` with `Retry-After` (0: never)."""
        self.rate_tiers = RateTiers()
        """Slack's per-method, per-workspace tiers: past them a call answers 429 with `Retry-After`."""
        self.surface = "agent_view"
        """The app's surface as installed: `agent_view` (new apps) or `assistant_view` (older installs)."""
        self.subscribed_events: list[str] = list(SUBSCRIBED_EVENTS)
        self.suggested_prompts: dict[str, list[dict[str, Any]]] = {}
        """The prompts a DM shows, by channel (or `channel/thread_ts` under `assistant_view`)."""
        self.manifests: list[dict[str, Any]] = []
        self.rate_limited: list[str] = []
        self._n_api = 0
        self._failures: dict[str, list[_Failure]] = {}
        self._delays: dict[str, float] = {}
        self.faults: Faults | None = None
        """Random 429s and 500s on Web API calls (a chaos run)."""
        self._user_files: dict[str, tuple[dict[str, Any], _Blob]] = {}
        self._download_failures: dict[str, int] = {}
        self._pending: dict[str, _PendingUpload] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._n_ts = 0
        self._n_file = 0
        self._n_response = 0
        self._runner: web.AppRunner | None = None
        self.root = ""
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "assistant.threads.setStatus": self._need("channel_id", "thread_ts", empty_ok=("status",)),
            "assistant.threads.setTitle": self._need("channel_id", "thread_ts", "title"),
            "assistant.threads.setSuggestedPrompts": self._suggested_prompts,
            "agents.sessions.setStatus": self._need("channel_id", "status"),
            "reactions.add": self._reaction_add,
            "reactions.remove": self._reaction_remove,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "conversations.members": self._members,
            "usergroups.users.list": self._usergroup_users,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "files.info": self._files_info,
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> str:
        """Start listening on an ephemeral port; return the Web API base URL (ends in /api/)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{team_file}/download/{name}", self._download)
        app.router.add_get("/files-pri/{team_file}/{name}", self._download)
        app.router.add_post("/response/{n}", self._response_url)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/oauth/v2/authorize", self._authorize)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.root = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """The Web API base URL, for `AsyncWebClient(base_url=...)`."""
        return f"{self.root}/api/"

    # ------------------------------------------------------------------ test controls

    def fail(
        self,
        method: str,
        error: str = "internal_error",
        times: int = 1,
        status: int = 200,
        headers: dict[str, str] | None = None,
        text: bool = False,
    ) -> None:
        """Make the next `times` calls of `method` fail (`times=-1`: forever). `text`: the answer
        is `error` as plain text, not JSON, as Slack's edge answers a 5xx.

        `method` may also be "upload" (the upload URL: answers `status` with text `error`).
        """
        self._failures.setdefault(method, []).append(_Failure(error, times, status, dict(headers or {}), text))

    def delay(self, method: str, seconds: float) -> None:
        """Answer every call of `method` (or "upload", "download") after `seconds`."""
        self._delays[method] = seconds

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        """The args of every call to `method`, in order."""
        return [c.args for c in self.calls if c.method == method]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The stored message at (channel, ts), if any."""
        for msg in self.messages:
            if msg["channel"] == channel and msg["ts"] == ts:
                return msg
        return None

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Stored messages (posts, streams, file shares) in a thread, in ts order."""
        found = [m for m in self.messages if m["channel"] == channel and m.get("thread_ts") == thread_ts]
        return sorted(found, key=lambda m: ts_key(m["ts"]))

    def thread_texts(self, channel: str, thread_ts: str) -> list[str]:
        """`rendered_text` of every message in a thread."""
        return [rendered_text(m) for m in self.thread(channel, thread_ts)]

    rendered_text = staticmethod(rendered_text)

    @staticmethod
    def task_updates(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The latest `task_update` chunk per task id of a stream message."""
        tasks: dict[str, dict[str, Any]] = {}
        for c in msg.get("chunks") or []:
            if c.get("type") == "task_update":
                tasks[c["id"]] = {**tasks.get(c["id"], {}), **c}
        return tasks

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store a message a person wrote (so conversations.replies returns it)."""
        msg = self._new_message(channel, ts or self._next_ts(), thread_ts, text)
        msg.update(user=user, bot_id=None)
        if files:
            msg["files"] = files
        return msg

    def add_user_file(
        self,
        name: str,
        content: bytes | None = None,
        *,
        size: int | None = None,
        mimetype: str = "text/plain",
    ) -> dict[str, Any]:
        """Register a file a user shared; return it as it appears in an event's `files`.

        With `content=None`, `size` deterministic bytes are generated while downloading.
        """
        file_id = self._next_file_id()
        if content is None:
            blob = _Blob(size=size or 0, seed=file_id)
        else:
            blob = _Blob(size=len(content), content=content)
        base = f"{self.root}/files-pri/{self.team_id}-{file_id}"
        info = {
            "id": file_id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1].lower() if "." in name else "binary",
            "pretty_type": mimetype,
            "user": "U_USER",
            "size": blob.size,
            "mode": "hosted",
            "is_external": False,
            "is_public": True,
            "url_private": f"{base}/{name}",
            "url_private_download": f"{base}/download/{name}",
            "permalink": f"https://fake-workspace.slack.com/files/U_USER/{file_id}/{name}",
        }
        self._user_files[file_id] = (info, blob)
        self._files[file_id] = info
        return dict(info)

    def expected_sha256(self, file_dict: dict[str, Any]) -> str:
        """sha256 hex of a user file's bytes (from `add_user_file`)."""
        return self._user_files[file_dict["id"]][1].sha256

    def fail_downloads_of(self, file_id: str, status: int = 500) -> None:
        """Make downloads of that user file answer `status`."""
        self._download_failures[file_id] = status

    def new_response_url(self) -> str:
        """A fresh response_url on this fake; POSTs to it land in `self.responses[url]`."""
        self._n_response += 1
        url = f"{self.root}/response/{self._n_response}"
        self.responses[url] = []
        return url

    # ------------------------------------------------------------------ HTTP handlers

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        self.calls.append(SlackCall(method, args, dict(request.headers)))
        if self.faults is not None and self.faults.strike(f"{method} {sorted(args.items())!r}"):
            if self.faults.pick(["429", "500"]) == "429":
                return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"})
            return web.Response(status=500, text="internal error")
        if method in self._delays:
            await asyncio.sleep(self._delays[method])
        if method == "oauth.v2.access":  # the app's own credentials, not a token
            return web.json_response(self.installs.access(args, dict(request.headers)))
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else args.get("token")
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if method == "apps.connections.open":
            # The one method that takes the app-level token, not the bot token.
            if token != self.app_token:
                return web.json_response({"ok": False, "error": "invalid_auth"})
            return web.json_response({"ok": True, "url": f"ws://{self.root[len('http://'):]}/socket"})
        if method in ("apps.manifest.validate", "apps.manifest.create"):
            return web.json_response(self._manifest(token, args))
        install, refused = self.installs.holder(token)
        if install is None:
            return web.json_response({"ok": False, "error": refused})
        self._caller = install
        channel = args.get("channel") or args.get("channel_id")
        if isinstance(channel, str) and channel and not self.installs.reaches(install, channel):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        self._n_api += 1
        if self.rate_limit_every and self._n_api % self.rate_limit_every == 0:
            self.rate_limited.append(method)
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "0"})
        wait = self.rate_tiers.retry_after(install.key, method, args)
        if wait is not None:
            self.rate_limited.append(method)
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(wait)}
            )
        # Slack names the token's scopes on every answer to an authenticated call.
        scopes = self.scopes if install is self.installs.installed[0] else list(install.scopes)
        scope_headers = {"x-oauth-scopes": ",".join(scopes)}
        needed = METHOD_SCOPES.get(method)
        if needed and needed not in scopes:
            answer = {"ok": False, "error": "missing_scope", "needed": needed, "provided": ",".join(scopes)}
            return web.json_response(answer, headers=scope_headers)
        failure = self._take_failure(method)
        if failure is not None and failure.text:
            return web.Response(status=failure.status, text=failure.error, headers=failure.headers)
        if failure is not None:
            return web.json_response(
                {"ok": False, "error": failure.error}, status=failure.status, headers={**scope_headers, **failure.headers}
            )
        too_big = message_size_error(method, args)
        if too_big is None and method.startswith("chat.") and not _blocks_within_limits(args.get("blocks") or []):
            too_big = "invalid_blocks"
        if too_big is not None:
            return web.json_response(_err(too_big), headers=scope_headers)
        handler = self._handlers.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, headers=scope_headers)
        return web.json_response(handler(args), headers=scope_headers)

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        self.calls.append(SlackCall("upload", {"file_id": file_id}, dict(request.headers)))
        if "upload" in self._delays:
            await asyncio.sleep(self._delays["upload"])
        pending = self._pending.get(file_id)
        if pending is None:
            return web.Response(status=404, text="file not found")
        failure = self._take_failure("upload")
        if failure is not None:
            return web.Response(status=failure.status, text=failure.error, headers=failure.headers)
        h, size, kept = hashlib.sha256(), 0, bytearray()
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader) or part.name != "file":
                    continue
                while block := await part.read_chunk(CHUNK):
                    h.update(block)
                    size += len(block)
                    if size < KEEP_LIMIT:
                        kept += block
        else:
            async for block in request.content.iter_chunked(CHUNK):
                h.update(block)
                size += len(block)
                if size < KEEP_LIMIT:
                    kept += block
        pending.size, pending.sha256 = size, h.hexdigest()
        pending.content = bytes(kept) if size < KEEP_LIMIT else None
        return web.Response(text=f"OK - {size}", content_type="text/plain")

    async def _download(self, request: web.Request) -> web.StreamResponse:
        team_file = request.match_info["team_file"]
        file_id = team_file.split("-", 1)[-1]
        auth = request.headers.get("Authorization", "")
        authorized = auth.startswith("Bearer ") and self.installs.holder(auth[7:])[0] is not None
        self.downloads.append({"file_id": file_id, "authorized": authorized})
        if "download" in self._delays:
            await asyncio.sleep(self._delays["download"])
        if not authorized or not self.files_read_scope:
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        entry = self._user_files.get(file_id)
        if entry is None:
            return web.Response(status=404, text="File not found", content_type="text/plain")
        if file_id in self._download_failures:
            return web.Response(status=self._download_failures[file_id], text="Internal Server Error")
        info, blob = entry
        resp = web.StreamResponse(
            headers={
                "Content-Type": info["mimetype"],
                "Content-Disposition": f'attachment; filename="{info["name"]}"',
            }
        )
        resp.content_length = blob.size
        await resp.prepare(request)
        for block in blob.chunks():
            await resp.write(block)
        await resp.write_eof()
        return resp

    async def _response_url(self, request: web.Request) -> web.Response:
        url = f"{self.root}/response/{request.match_info['n']}"
        if url not in self.responses:
            return web.Response(status=404, text="invalid_token")
        try:
            body: Any = await request.json()
        except ValueError:
            body = await request.text()
        self.responses[url].append(body)
        return web.Response(text="ok")

    # ------------------------------------------------------------------ Web API methods

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, then record the client's acknowledgements."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self._sockets),
                            "connection_info": {"app_id": "A1"}})
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(message.data))
        finally:
            self._sockets.remove(ws)
        return ws

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def push_socket(self, envelope_type: str, payload: dict[str, Any]) -> str:
        """Send an envelope (`events_api`, `slash_commands`, `interactive`) to the connected app."""
        envelope_id = str(uuid.uuid4())
        await self._sockets[-1].send_json(
            {"envelope_id": envelope_id, "type": envelope_type, "payload": payload,
             "accepts_response_payload": envelope_type != "events_api", "retry_attempt": 0,
             "retry_reason": ""}
        )
        return envelope_id

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        if self._caller is self.installs.installed[0] and self._caller.team_id == self.team_id:
            return {
                "ok": True,
                "url": "https://fake-workspace.slack.com/",
                "team": "Fake Workspace",
                "user": "threadbox",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        return self.installs.auth_test(self._caller)

    async def _authorize(self, request: web.Request) -> web.Response:
        """Slack's install page, approved at once: back to the app's redirect URL."""
        self.calls.append(SlackCall("oauth/v2/authorize", dict(request.query), dict(request.headers)))
        redirect, query = self.installs.authorize(dict(request.query))
        if not redirect:
            return web.Response(status=400, text=query["error"])
        raise web.HTTPFound(f"{redirect}?{urlencode(query)}")

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not channel:
            return _err("channel_not_found")
        if not (args.get("text") or args.get("blocks") or args.get("attachments")):
            return _err("no_text")
        msg = self._new_message(channel, self._next_ts(), args.get("thread_ts") or None, args.get("text") or "")
        msg["blocks"] = args.get("blocks") or []
        if args.get("metadata"):
            msg["metadata"] = args["metadata"]
        return {"ok": True, "channel": channel, "ts": msg["ts"], "message": self._public(msg)}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.message(args.get("channel", ""), args.get("ts", ""))
        if msg is None:
            return _err("message_not_found")
        if self._still_streaming(msg):
            return _err("streaming_state_conflict")
        if "text" in args:
            msg["text"] = args["text"]
        if "blocks" in args:
            msg["blocks"] = args["blocks"] or []
        if msg.get("stream"):
            # Editing a streamed message replaces what was streamed, and ends the stream.
            msg.update(stream=False, streaming=False, chunks=[])
        msg["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": msg["channel"],
            "ts": msg["ts"],
            "text": msg["text"],
            "message": self._public(msg),
        }

    def _delete(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.message(args.get("channel", ""), args.get("ts", ""))
        if msg is None:
            return _err("message_not_found")
        self.messages.remove(msg)
        return {"ok": True, "channel": msg["channel"], "ts": msg["ts"]}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return _err("channel_not_found")
        if not args.get("user"):
            return _err("user_not_in_channel")
        ts = self._next_ts()
        self.ephemerals.append({**args, "message_ts": ts})
        return {"ok": True, "message_ts": ts}

    def _start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = args.get("channel"), args.get("thread_ts")
        if not channel or not thread_ts:
            return _err("invalid_arguments")
        if (
            self.strict_streams
            and channel[:1] in ("C", "G")
            and not (args.get("recipient_user_id") and args.get("recipient_team_id"))
        ):
            return _err("invalid_arguments")
        chunks = _stream_chunks(args)
        if chunks is None:
            return _err("invalid_chunks")
        if args.get("task_display_mode") not in (None, "timeline", "plan"):
            return _err("invalid_arguments")
        if args.get("is_stoppable") and "message_stream_stopped" not in self.subscribed_events:
            return _err("not_subscribed_to_message_stream_stopped")
        msg = self._new_message(channel, self._next_ts(), thread_ts, "")
        now = time.monotonic()
        msg.update(stream=True, streaming=True, chunks=chunks, started_at=now, appended_at=now)
        msg["stoppable"] = bool(args.get("is_stoppable"))
        for key in ("recipient_user_id", "recipient_team_id", "task_display_mode"):
            if key in args:
                msg[key] = args[key]
        msg["text"] = rendered_text(msg)
        return {"ok": True, "channel": channel, "ts": msg["ts"]}

    def _append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg, error = self._extend_stream(args)
        if msg is None:
            return _err(error)
        msg["text"] = rendered_text(msg)
        return {"ok": True, "channel": msg["channel"], "ts": msg["ts"]}

    def _stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg, error = self._extend_stream(args)
        if msg is None:
            return _err(error)
        if args.get("blocks"):
            msg["blocks"] = args["blocks"]
        if args.get("metadata"):
            msg["metadata"] = args["metadata"]
        msg["streaming"] = False
        msg["text"] = rendered_text(msg)
        return {"ok": True, "channel": msg["channel"], "ts": msg["ts"], "message": self._public(msg)}

    def _extend_stream(self, args: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """Add the call's chunks to its open stream; (None, error code) when it can't."""
        msg, error = self._open_stream(args)
        if msg is None:
            return None, error
        chunks = _stream_chunks(args)
        if chunks is None:
            return None, "invalid_chunks"
        msg["chunks"].extend(chunks)
        msg["appended_at"] = time.monotonic()
        return msg, ""

    def _open_stream(self, args: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        if not args.get("channel") or not args.get("ts"):
            return None, "invalid_arguments"
        msg = self.message(args["channel"], args["ts"])
        if msg is None or not msg.get("stream"):
            return None, "message_not_found"
        if msg.get("stopped_by_user"):
            return None, "stopped_by_user"
        if not self._still_streaming(msg):
            return None, "message_not_in_streaming_state"
        return msg, ""

    def _still_streaming(self, msg: dict[str, Any]) -> bool:
        """Whether a stream is open; Slack ends one server-side after a while or a long pause."""
        if not msg.get("streaming"):
            return False
        now = time.monotonic()
        too_long = self.stream_max_seconds is not None and now - msg["started_at"] > self.stream_max_seconds
        paused = self.stream_max_pause is not None and now - msg["appended_at"] > self.stream_max_pause
        if too_long or paused:
            msg["streaming"] = False  # what was streamed stays; buffered text is lost
        return bool(msg["streaming"])

    def stop_by_user(self, channel: str, ts: str) -> None:
        """The person presses Slack's own stop on a streaming message: it takes nothing more."""
        msg = self.message(channel, ts)
        assert msg is not None and msg.get("streaming"), "only a streaming message can be stopped"
        msg.update(streaming=False, stopped_by_user=True)

    def streaming_messages(self) -> list[dict[str, Any]]:
        """Streams still open (a reply left open shows as still being written)."""
        return [m for m in self.messages if m.get("stream") and self._still_streaming(m)]

    def _suggested_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, prompts = args.get("channel_id"), args.get("prompts")
        if not channel or not isinstance(prompts, list) or not 0 < len(prompts) <= SUGGESTED_PROMPTS_LIMIT:
            return _err("invalid_arguments")
        if self.surface == "agent_view":
            if not args.get("thread_ts"):  # with a thread_ts the call "silently fails"
                self.suggested_prompts[channel] = prompts
            return {"ok": True}
        if not args.get("thread_ts"):
            return _err("invalid_arguments")
        self.suggested_prompts[f"{channel}/{args['thread_ts']}"] = prompts
        return {"ok": True}

    def _manifest(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        """`apps.manifest.validate` / `create` for a new app, with the configuration token."""
        if token != CONFIG_TOKEN:
            return _err("invalid_auth")
        manifest = args.get("manifest")
        if isinstance(manifest, str):
            try:
                manifest = json.loads(manifest)
            except ValueError:
                return _err("invalid_manifest")
        if not isinstance(manifest, dict):
            return _err("invalid_manifest")
        problems = manifest_problems(manifest)
        if problems:
            return {"ok": False, "error": "invalid_manifest", "errors": problems}
        self.manifests.append(manifest)
        return {"ok": True, "app_id": f"A{len(self.manifests):04d}"}

    def end_streams(self) -> None:
        """Slack ends every open stream server-side now."""
        for msg in self.messages:
            msg["streaming"] = False

    @staticmethod
    def _need(*keys: str, empty_ok: tuple[str, ...] = ()) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """A handler answering ok when `keys` are non-empty and `empty_ok` keys are present."""

        def handler(args: dict[str, Any]) -> dict[str, Any]:
            if any(args.get(k) in (None, "") for k in keys) or any(k not in args for k in empty_ok):
                return _err("invalid_arguments")
            return {"ok": True}

        return handler

    def _reaction_add(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (args.get("channel", ""), args.get("timestamp", ""), args.get("name", ""))
        if not all(key):
            return _err("invalid_arguments")
        if not SLACK_TS.fullmatch(str(key[1])):
            return _err("invalid_timestamp")  # a message's ts is seconds.micros
        if key in self.reactions:
            return _err("already_reacted")
        self.reactions.append(key)
        return {"ok": True}

    def _reaction_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (args.get("channel", ""), args.get("timestamp", ""), args.get("name", ""))
        if key not in self.reactions:
            return _err("no_reaction")
        self.reactions.remove(key)
        return {"ok": True}

    def _users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """The workspace's people (`directory` and those given in `users`), a page at a time."""
        try:
            limit, start = int(args.get("limit") or 0) or 1000, int(args.get("cursor") or 0)
        except ValueError:
            return _err("invalid_cursor")
        if limit > 1000:
            return _err("invalid_limit")
        everyone = list(dict.fromkeys([*self.directory, *self.users]))
        page = [self._user(user_id) for user_id in everyone[start : start + limit]]
        more = start + limit < len(everyone)
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = args.get("user")
        if not user_id:
            return _err("user_not_found")
        return {"ok": True, "user": self._user(user_id)}

    def _user(self, user_id: str) -> dict[str, Any]:
        name = user_id.lower()
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": False,
            "is_bot": user_id == self.bot_user_id,
            "tz": "Europe/Paris",
            "tz_offset": 3600,
            "profile": {"display_name": name, "real_name": name.title(), "team": self.team_id},
        }
        user.update(self.users.get(user_id, {}))
        return user

    def _members(self, args: dict[str, Any]) -> dict[str, Any]:
        """Members of a conversation, paged as Slack pages them (`limit`, `cursor`)."""
        channel_id = args.get("channel")
        if not channel_id:
            return _err("channel_not_found")
        members = self.members.get(channel_id)
        if members is None:
            members = [self.bot_user_id, f"U{channel_id[1:]}"] if channel_id.startswith("D") else [self.bot_user_id, "U1", "U2", "U3"]
        try:
            limit = max(1, min(int(args.get("limit") or 100), 1000))
            start = int(args.get("cursor") or 0)
        except ValueError:
            return _err("invalid_cursor")
        page = members[start : start + limit]
        following = start + limit if start + limit < len(members) else ""
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": str(following)}}

    def _usergroup_users(self, args: dict[str, Any]) -> dict[str, Any]:
        group = args.get("usergroup")
        if not group or group not in self.usergroups:
            return _err("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id, view = args.get("user_id"), args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not user_id or not isinstance(view, dict) or view.get("type") != "home":
            return _err("invalid_arguments")
        if len(view.get("blocks") or []) > 100 or not _blocks_within_limits(view.get("blocks") or []):
            return _err("invalid_blocks")
        self.home_views[user_id] = view
        return {"ok": True, "view": {"id": f"V{len(self.home_views):04d}", **view}}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A modal for the person whose interaction gave `trigger_id`: the trigger is good for
        3 seconds and once; the view is held to Slack's modal limits."""
        trigger, view = str(args.get("trigger_id") or ""), args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict):
            return _err("invalid_arguments")
        issued = trigger.split(".", 1)[0]
        if not issued.isdigit():
            return _err("invalid_trigger_id")
        if time.time() - int(issued) > TRIGGER_SECONDS:
            return _err("expired_trigger_id")
        if trigger in self._exchanged_triggers:
            return _err("exchanged_trigger_id")
        problem = modal_problem(view)
        if problem:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": [problem]}}
        self._exchanged_triggers.add(trigger)
        opened = {"id": f"VM{len(self.modals) + 1:04d}", "team_id": "T1", "state": {"values": {}}, **view}
        self.modals.append(opened)
        return {"ok": True, "view": opened}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = args.get("channel")
        if not channel_id:
            return _err("channel_not_found")
        is_im = channel_id.startswith("D")
        channel = {
            "id": channel_id,
            "name": None if is_im else f"channel-{channel_id.lower()}",
            "is_channel": channel_id.startswith("C"),
            "is_group": channel_id.startswith("G"),
            "is_im": is_im,
            "is_private": not channel_id.startswith("C"),
            "is_member": True,
            "is_archived": False,
            "created": 1700000000,
        }
        channel.update(self.channels.get(channel_id, {}))
        return {"ok": True, "channel": channel}

    def _replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """Oldest first (the parent first), `limit` per page, `cursor`, `oldest`/`latest`."""
        channel, ts = args.get("channel"), args.get("ts")
        if not channel or not ts:
            return _err("invalid_arguments")
        root = self.message(channel, ts)
        replies = [m for m in self.thread(channel, ts) if m is not root]
        if root is None and not replies:
            return _err("thread_not_found")
        try:
            limit = min(int(args.get("limit") or 1000), 1000)
            start = int(base64.b64decode(args["cursor"]).decode().split(":", 1)[1]) if args.get("cursor") else 0
        except (ValueError, IndexError):
            return _err("invalid_cursor")
        if limit < 1:
            return _err("invalid_limit")
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        oldest, latest = ts_key(str(args.get("oldest") or "0")), args.get("latest")

        def in_range(m: dict[str, Any]) -> bool:
            key = ts_key(m["ts"])
            after = key >= oldest if inclusive else key > oldest
            if latest is None:
                return after or oldest == (0, 0)
            before = key <= ts_key(str(latest)) if inclusive else key < ts_key(str(latest))
            return (after or oldest == (0, 0)) and before

        found = ([root] if root is not None else []) + [m for m in replies if in_range(m)]
        page = found[start : start + limit]
        more = start + limit < len(found)
        cursor = base64.b64encode(f"next:{start + limit}".encode()).decode() if more else ""
        return {
            "ok": True,
            "messages": [self._public(m) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": cursor},
        }

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        """A channel's top-level messages, newest first, `limit` of them before `latest`."""
        channel = args.get("channel")
        if not channel:
            return _err("channel_not_found")
        try:
            limit = min(int(args.get("limit") or 100), 999)
        except ValueError:
            return _err("invalid_limit")
        latest = ts_key(str(args["latest"])) if args.get("latest") else None
        top = [
            m for m in self.messages
            if m["channel"] == channel and m.get("thread_ts") in (None, m["ts"])
            and (latest is None or ts_key(m["ts"]) < latest)
        ]
        top.sort(key=lambda m: ts_key(m["ts"]), reverse=True)
        page = top[:limit]
        return {"ok": True, "messages": [self._public(m) for m in page], "has_more": len(top) > limit}

    def _get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), args.get("length")
        if not filename or length in (None, ""):
            return _err("invalid_arguments")
        try:
            declared = int(length)
        except (TypeError, ValueError):
            return _err("invalid_arguments")
        file_id = self._next_file_id()
        extra = {k: args[k] for k in ("alt_txt", "snippet_type") if k in args}
        self._pending[file_id] = _PendingUpload(file_id, filename, declared, extra=extra)
        return {"ok": True, "upload_url": f"{self.root}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            return _err("invalid_arguments")
        channel = args.get("channel_id") or (args.get("channels") or "").split(",")[0] or None
        thread_ts = args.get("thread_ts") or None
        done: list[dict[str, Any]] = []
        for item in files:
            pending = self._pending.get(item.get("id", "")) if isinstance(item, dict) else None
            if pending is None:
                return _err("file_not_found")
        for item in files:
            pending = self._pending.pop(item["id"])
            title = item.get("title") or pending.filename
            self.uploads.append(
                {
                    "id": pending.file_id,
                    "title": title,
                    "filename": pending.filename,
                    "length": pending.length,
                    "channel": channel,
                    "thread_ts": thread_ts,
                    "size": pending.size,
                    "sha256": pending.sha256,
                    "content": pending.content,
                    "initial_comment": args.get("initial_comment"),
                }
            )
            info = {
                "id": pending.file_id,
                "created": int(time.time()),
                "name": pending.filename,
                "title": title,
                "mimetype": "application/octet-stream",
                "size": pending.size,
                "user": self.bot_user_id,
                "mode": "hosted",
                "url_private": f"{self.root}/files-pri/{self.team_id}-{pending.file_id}/{pending.filename}",
                "permalink": f"https://fake-workspace.slack.com/files/{self.bot_user_id}/{pending.file_id}/{pending.filename}",
                "shares": {},
            }
            self._files[pending.file_id] = info
            done.append({"id": pending.file_id, "title": title})
        if channel:
            share = self._new_message(channel, self._next_ts(), thread_ts, args.get("initial_comment") or "")
            share["files"] = [self._files[d["id"]] for d in done]
            share["upload"] = True
            kind = "private" if channel[:1] in ("G", "D") else "public"
            for d in done:
                self._files[d["id"]]["shares"] = {kind: {channel: [{"ts": share["ts"], "thread_ts": thread_ts}]}}
        return {"ok": True, "files": done}

    def _files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        info = self._files.get(args.get("file", ""))
        if info is None:
            return _err("file_not_found")
        return {"ok": True, "file": dict(info), "comments": [], "response_metadata": {"next_cursor": ""}}

    # ------------------------------------------------------------------ internals

    def _new_message(self, channel: str, ts: str, thread_ts: str | None, text: str) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "thread_ts": thread_ts,
            "text": text,
            "blocks": [],
            "chunks": [],
            "stream": False,
            "streaming": False,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
        }
        self.messages.append(msg)
        return msg

    def _public(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A stored message as the Web API returns it."""
        out = {k: msg[k] for k in ("type", "user", "bot_id", "text", "ts") if msg.get(k) is not None}
        out["team"] = self.team_id
        for key in ("thread_ts", "blocks", "files", "metadata", "edited", "upload"):
            if msg.get(key):
                out[key] = msg[key]
        return out

    def _next_ts(self) -> str:
        self._n_ts += 1
        return f"{1700000100 + self._n_ts}.{(self._n_ts * 100) % 1_000_000:06d}"

    def _next_file_id(self) -> str:
        self._n_file += 1
        return f"F{self._n_file:04d}"

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        if failure.times > 0:
            failure.times -= 1
            if failure.times == 0:
                queue.pop(0)
        return failure


def _err(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _blocks_within_limits(blocks: list[Any]) -> bool:
    """Slack's limits for the blocks it is sent most often (Block Kit reference)."""

    def text_ok(text: Any, limit: int) -> bool:
        return isinstance(text, dict) and isinstance(text.get("text"), str) and 0 < len(text["text"]) <= limit

    for block in blocks:
        if not isinstance(block, dict):
            return False
        kind = block.get("type")
        if kind == "header" and not (text_ok(block.get("text"), 150) and block["text"].get("type") == "plain_text"):
            return False
        if kind == "section":
            if "text" in block and not text_ok(block["text"], 3000):
                return False
            accessory = block.get("accessory")
            if accessory is not None and accessory.get("type") == "button":
                if not text_ok(accessory.get("text"), 75) or len(str(accessory.get("value", ""))) > 2000:
                    return False
        if kind == "context_actions":
            elements = block.get("elements") or []
            if not 0 < len(elements) <= 5:
                return False
            for element in elements:
                if element.get("type") == "feedback_buttons":
                    buttons = [element.get("positive_button"), element.get("negative_button")]
                    if not element.get("action_id") or not all(
                        isinstance(b, dict) and text_ok(b.get("text"), 75) and len(str(b.get("value", ""))) <= 2000
                        for b in buttons
                    ):
                        return False
        if kind == "context":
            elements = block.get("elements") or []
            if not 0 < len(elements) <= 10 or not all(text_ok(e, 3000) for e in elements):
                return False
    return True


def _stream_chunks(args: dict[str, Any]) -> list[dict[str, Any]] | None:
    """markdown_text and chunks of a stream call as chunk dicts; None if malformed."""
    out: list[dict[str, Any]] = []
    if args.get("markdown_text"):
        out.append({"type": "markdown_text", "text": args["markdown_text"]})
    chunks = args.get("chunks")
    if chunks is None:
        return out
    if not isinstance(chunks, list):
        return None
    for c in chunks:
        if not isinstance(c, dict) or c.get("type") not in _CHUNK_TYPES:
            return None
        if c["type"] == "markdown_text" and not isinstance(c.get("text"), str):
            return None
        if c["type"] == "task_update" and (
            not c.get("id") or not c.get("title") or c.get("status") not in _TASK_STATUSES
            or not all(
                isinstance(s, dict) and s.get("type") == "url" and str(s.get("url", "")).startswith(("https://", "http://"))
                and s.get("text") for s in c.get("sources") or []
            )
        ):
            return None
        if c["type"] == "plan_update" and not (isinstance(c.get("title"), str) and c["title"]):
            return None
        out.append(c)
    return out


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Merge query, form and JSON args; decode JSON-string fields such as `blocks`."""
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    args[key] = value
                else:
                    args[key] = {"filename": value.filename, "content": value.file.read()}
    for key in _JSON_FIELDS:
        value = args.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                decoded = json.loads(value)
            except ValueError:
                continue
            if isinstance(decoded, (list, dict)):
                args[key] = decoded
    return args


# ---------------------------------------------------------------------- request builders


def sign(signing_secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with `body`: v0 signature, timestamp and Content-Type.

    The Content-Type is JSON for a body starting with "{", else form-urlencoded.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(signing_secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    is_json = body.lstrip().startswith("{")
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/json" if is_json else "application/x-www-form-urlencoded",
    }


def event_body(
    event: dict[str, Any],
    *,
    team_id: str = "T1",
    event_id: str | None = None,
    api_app_id: str = "A1",
    bot_user_id: str = "UBOT",
    enterprise_id: str | None = None,
    org_install: bool = False,
    shared: bool = False,
) -> str:
    """An Events API `event_callback` envelope around `event` (JSON text), for the install in
    `team_id`, or (`org_install`) for the org-wide install of `enterprise_id`: its
    authorization then names the org and no team, as Slack's does."""
    body: dict[str, Any] = {
        "token": "verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": enterprise_id,
                "team_id": None if org_install else team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": org_install,
            }
        ],
        "is_ext_shared_channel": shared,
        "event_context": "4-" + uuid.uuid4().hex,
    }
    if enterprise_id:
        body["enterprise_id"] = enterprise_id
    return json.dumps(body)


def _trigger_id() -> str:
    return f"{int(time.time())}.1.{uuid.uuid4().hex[:16]}"


def command_body(
    command: str = "/reset",
    text: str = "",
    *,
    channel_id: str,
    user_id: str,
    team_id: str = "T1",
    response_url: str,
    channel_name: str = "general",
    enterprise_id: str | None = None,
    org_install: bool = False,
) -> str:
    """A slash command payload, form-urlencoded like Slack sends it."""
    fields = {
        "token": "verification-token",
        "team_id": team_id,
        "team_domain": "fake-workspace",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "is_enterprise_install": "true" if org_install else "false",
        "response_url": response_url,
        "trigger_id": _trigger_id(),
    }
    if enterprise_id:
        fields["enterprise_id"] = enterprise_id
    return urlencode(fields)


def shortcut_body(
    callback_id: str,
    *,
    message: dict[str, Any],
    channel_id: str,
    user_id: str,
    team_id: str = "T1",
    response_url: str,
) -> str:
    """A message shortcut (`message_action`) payload, form-urlencoded as `payload=`."""
    payload = {
        "type": "message_action",
        "token": "verification-token",
        "action_ts": f"{time.time():.6f}",
        "team": {"id": team_id, "domain": "fake-workspace"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id, "name": user_id.lower()},
        "channel": {"id": channel_id, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": _trigger_id(),
        "response_url": response_url,
        "message_ts": message.get("ts"),
        "message": message,
    }
    return urlencode({"payload": json.dumps(payload)})


def block_action_body(
    action_id: str,
    value: str,
    *,
    channel_id: str,
    user_id: str,
    team_id: str = "T1",
    response_url: str,
    message_ts: str = "1700000000.000001",
    block_id: str = "actions",
    message: dict[str, Any] | None = None,
) -> str:
    """A `block_actions` payload, form-urlencoded: for a button in an ephemeral message, or
    in `message` (a message in the channel, which the payload then carries)."""
    now = f"{time.time():.6f}"
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": "A1",
        "token": "verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": message is None,
        },
        "trigger_id": _trigger_id(),
        "team": {"id": team_id, "domain": "fake-workspace"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "general"},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": now,
            }
        ],
    }
    if message is not None:
        payload["message"] = message
    return urlencode({"payload": json.dumps(payload)})


def home_action_body(
    action_id: str,
    value: str,
    *,
    user_id: str,
    team_id: str = "T1",
    view_id: str = "V0001",
    block_id: str = "home",
) -> str:
    """A `block_actions` payload for a button on the app's Home tab: a view container, and
    (unlike a message's buttons) no channel and no response_url."""
    payload = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": "A1",
        "token": "verification-token",
        "container": {"type": "view", "view_id": view_id},
        "trigger_id": _trigger_id(),
        "team": {"id": team_id, "domain": "fake-workspace"},
        "enterprise": None,
        "is_enterprise_install": False,
        "view": {"id": view_id, "team_id": team_id, "type": "home", "blocks": [], "private_metadata": "",
                 "callback_id": "", "state": {"values": {}}, "hash": "1700000000.abcdef", "app_id": "A1",
                 "bot_id": "BBOT"},
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": "Reset", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def view_submission_body(
    view: dict[str, Any], answers: dict[str, Any], *, user_id: str, team_id: str = "T1"
) -> str:
    """A `view_submission` payload for a modal that `views.open` opened, with `answers` by
    block id as a person gives them: text for a plain_text_input, an option's value for a
    static_select, a list of values for a multi_static_select. Slack sends every input's state,
    the untouched ones with their initial values; an answer the view has no place for, or an
    option it does not offer, is a mistake in the test."""
    values: dict[str, dict[str, Any]] = {}
    inputs = {block["block_id"]: block for block in view.get("blocks") or [] if block.get("type") == "input"}
    unknown = set(answers) - set(inputs)
    assert not unknown, f"the modal has no input {sorted(unknown)}"
    for block_id, block in inputs.items():
        element = block["element"]
        kind, action_id = element["type"], element["action_id"]
        offered = {option["value"]: option for option in element.get("options") or []}
        state: dict[str, Any] = {"type": kind}
        if kind == "plain_text_input":
            state["value"] = answers.get(block_id, element.get("initial_value")) or None
        elif kind == "static_select":
            chosen = answers.get(block_id)
            assert chosen is None or chosen in offered, f"{block_id} offers no option {chosen!r}"
            state["selected_option"] = offered[chosen] if chosen is not None else element.get("initial_option")
        elif kind == "multi_static_select":
            chosen = answers.get(block_id)
            if chosen is None:
                state["selected_options"] = element.get("initial_options") or []
            else:
                assert all(value in offered for value in chosen), f"{block_id} does not offer all of {chosen!r}"
                state["selected_options"] = [offered[value] for value in chosen]
        values[block_id] = {action_id: state}
    payload = {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "fake-workspace"},
        "user": {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id},
        "api_app_id": "A1",
        "token": "verification-token",
        "trigger_id": _trigger_id(),
        "view": {**view, "state": {"values": values}, "hash": "1700000000.abcdef"},
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return urlencode({"payload": json.dumps(payload)})


def home_opened_event(user: str, *, tab: str = "home", channel: str | None = None) -> dict[str, Any]:
    """An `app_home_opened` event: `user` opened the app's Home (or Messages) tab."""
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": channel or f"D{user[1:]}",
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }


def mention_event(
    text: str,
    *,
    channel: str,
    user: str,
    ts: str,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
    team: str = "T1",
    bot_user_id: str = "UBOT",
) -> dict[str, Any]:
    """An `app_mention` event; `<@UBOT>` is prepended to `text` unless already there."""
    mention = f"<@{bot_user_id}>"
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text if mention in text else f"{mention} {text}",
        "ts": ts,
        "client_msg_id": str(uuid.uuid4()),
        "team": team,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
        event["upload"] = False
    return event


def message_event(
    text: str,
    *,
    channel: str,
    user: str,
    ts: str,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    files: list[dict[str, Any]] | None = None,
    bot_id: str | None = None,
    subtype: str | None = None,
    team: str = "T1",
) -> dict[str, Any]:
    """A `message` event. With `files` and no `subtype`, the subtype is "file_share" as in Slack."""
    event: dict[str, Any] = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if bot_id is None:
        event["client_msg_id"] = str(uuid.uuid4())
    else:
        event["bot_id"] = bot_id
        event["app_id"] = "A1"
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
        event["upload"] = False
        subtype = subtype or "file_share"
    if subtype:
        event["subtype"] = subtype
    return event
