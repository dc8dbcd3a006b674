"""A fake Anthropic API (Messages with code-execution containers, and the Files API).

`FakeAnthropic` is an aiohttp server on 127.0.0.1 that the real `anthropic` SDK talks to
(`AsyncAnthropic(base_url=await fake.start(), api_key=fake.api_key)`). Tests script its
answers with `enqueue(Reply(...), ErrorReply(...))` or a `responder`, and read back
`requests`, `usages`, `containers`, `uploaded` and the concurrency counters. Module functions
build content blocks exactly as the API sends them. Input is booked as the API does
(`anthropic_books`): token counts, the prompt cache, context editing, and a 400 past
`context_window`; `advance()` moves the cache's clock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web

from .anthropic_books import (
    CacheBill,
    PromptCache,
    apply_context_edits,
    breakpoint_problem,
    context_edit_problem,
    count_tokens,
    value_tokens,
)
from .anthropic_skills import SkillsAPI
from .anthropic_web import (
    fetch_error,
    fetch_refusal,
    sealed_field_problem,
    searched_urls,
    server_tool_counts,
    web_tool_problem,
)
from .faults import Faults
from .slack_api import CHUNK, KEEP_LIMIT, pattern_chunks, pattern_sha256

CODE_EXECUTION_TOOL_PREFIX = "code_execution_"
# A scripted bash result's files written in the container (the fake's own key, never sent).
WRITES = "_writes"
OUTPUT_DIR = "$OUTPUT_DIR"
_COPY_TO_OUTPUT = re.compile(r"\bcp\s+((?:[^\s;&|]+\s+)+)[\"']?\$\{?OUTPUT_DIR\}?[\"']?/?[\"']?(?=\s|$|;|&)")
CODE_EXECUTION_TOOL_VERSIONS = (
    "code_execution_20250522",
    "code_execution_20250825",
    "code_execution_20260120",
    "code_execution_20260521",
)


@dataclass(frozen=True)
class ModelSpec:
    """What `GET /v1/models/{id}` says of a model, and what its requests may ask.

    `generation` 5 models put the words they write between tool calls into `thinking` blocks,
    refuse `thinking: disabled`, forced `tool_choice` and sampling parameters."""

    display_name: str
    max_input_tokens: int = 1_000_000
    max_tokens: int = 128_000
    lifecycle: str = "active"
    retires_at: str | None = None
    code_execution: bool = True
    generation: int = 5


# Models this fake serves; a request naming another one gets the API's 404, a retired one too.
KNOWN_MODELS = {
    "claude-sonnet-5-5": ModelSpec("Claude Sonnet 5.5"),
    "claude-opus-5-5": ModelSpec("Claude Opus 5.5"),
    "claude-haiku-5-5": ModelSpec("Claude Haiku 5.5", max_tokens=64_000),
    "claude-fable-5-2": ModelSpec("Claude Fable 5.2"),
    "claude-sonnet-5": ModelSpec("Claude Sonnet 5"),
    "claude-opus-5": ModelSpec("Claude Opus 5"),
    "claude-haiku-4-5": ModelSpec(
        "Claude Haiku 4.5", 200_000, 64_000, "deprecated", "2027-02-15T00:00:00Z", generation=4
    ),
    "claude-sonnet-4-5": ModelSpec(
        "Claude Sonnet 4.5", 200_000, 64_000, "retired", "2026-10-01T00:00:00Z", generation=4
    ),
}
SAMPLING_PARAMETERS = ("temperature", "top_p", "top_k")
# `output_config.effort` (GA); every model this fake serves supports each level.
EFFORT_LEVELS = ("low", "medium", "high", "max")
# A container lives up to 30 days; `expires_at` is a shorter value that rolls forward with use.
CONTAINER_LIFETIME = 30 * 24 * 3600.0
DEFAULT_CONTAINER_TTL = 3600.0
REQUEST_ID = web.RequestKey("request_id", str)


@dataclass
class Reply:
    """A scripted successful answer to one POST /v1/messages.

    `container_id=None` uses the request's container (or a new one if the request has a
    code-execution tool). `delay` is waited before answering; `chunk_delay` between SSE
    events. With `stream_error`, a streamed answer sends its content blocks, then that error
    as an SSE `error` event (a non-streamed one answers with the error instead). `usage`
    overrides token counts of the answer, e.g. `{"cache_read_input_tokens": 900}`.
    """

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    container_id: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    stream_error: ErrorReply | None = None
    usage: dict[str, int] = field(default_factory=dict)
    send_container: bool = True
    """False: the answer carries no `container` (the request's container stays as it was)."""
    stop_details: dict[str, Any] | None = None
    """E.g. `{"type": "refusal", "explanation": "…"}` with `stop_reason="refusal"`."""


@dataclass
class ErrorReply:
    """A scripted error answer: HTTP `status` with `{"type":"error","error":{type,message}}`."""

    status: int
    type: str
    message: str
    headers: dict[str, str] | None = None
    details: dict[str, Any] | None = None


Responder = Callable[[dict[str, Any]], "Reply | ErrorReply | Awaitable[Reply | ErrorReply]"]


@dataclass
class _File:
    id: str
    filename: str
    mime_type: str
    size: int
    created_at: float
    downloadable: bool
    content: bytes | None = None
    expires_at: float | None = None
    digest: str | None = None

    @property
    def sha256(self) -> str:
        if self.digest is None:
            self.digest = pattern_sha256(self.id, self.size)
        return self.digest

    def chunks(self) -> Iterable[bytes]:
        if self.content is None:
            return pattern_chunks(self.id, self.size)
        return (self.content[i : i + CHUNK] for i in range(0, len(self.content), CHUNK))

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": self.id,
            "type": "file",
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": self.size,
            "created_at": iso(self.created_at),
            "downloadable": self.downloadable,
        }
        if self.expires_at is not None:
            meta["expires_at"] = iso(self.expires_at)
        return meta


@dataclass
class _Download:
    status: int
    after_bytes: int | None = None
    stall_seconds: float = 0.0


@dataclass
class _Counters:
    in_flight: int = 0
    per_container: dict[str, int] = field(default_factory=dict)


def iso(epoch: float) -> str:
    """An epoch as the API writes times: ISO 8601 UTC with microseconds and "Z"."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


def _tool_id() -> str:
    return "srvtoolu_01" + uuid.uuid4().hex[:22]


def text(t: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": t}


def _bash_use(tool_id: str, command: str) -> dict[str, Any]:
    return {"type": "server_tool_use", "id": tool_id, "name": "bash_code_execution", "input": {"command": command}}


def code_run(
    command: str,
    stdout: str = "",
    stderr: str = "",
    return_code: int = 0,
    file_ids: Iterable[str] = (),
    tool_id: str | None = None,
    writes: dict[str, bytes] | None = None,
) -> list[dict[str, Any]]:
    """A bash run: `server_tool_use` (bash_code_execution) and its result block.

    `writes`: files the command writes, by path, into the container. As the real tool does,
    only those at the top level of this run's `$OUTPUT_DIR` (`$OUTPUT_DIR/name`) come back as
    output files; so does a file the command copies there (`cp path $OUTPUT_DIR/`). `file_ids`:
    files (made with `add_file`) this run left in its `$OUTPUT_DIR`."""
    tid = tool_id or _tool_id()
    result: dict[str, Any] = {
        "type": "bash_code_execution_tool_result",
        "tool_use_id": tid,
        "content": {
            "type": "bash_code_execution_result",
            "stdout": stdout,
            "stderr": stderr,
            "return_code": return_code,
            "content": [{"type": "bash_code_execution_output", "file_id": f} for f in file_ids],
        },
    }
    if writes:
        result[WRITES] = dict(writes)
    return [_bash_use(tid, command), result]


def code_error(
    command: str, error_code: str = "execution_time_exceeded", tool_id: str | None = None
) -> list[dict[str, Any]]:
    """A bash run that failed as a tool (`bash_code_execution_tool_result_error`)."""
    tid = tool_id or _tool_id()
    return [
        _bash_use(tid, command),
        {
            "type": "bash_code_execution_tool_result",
            "tool_use_id": tid,
            "content": {"type": "bash_code_execution_tool_result_error", "error_code": error_code},
        },
    ]


def file_edit(path: str, file_text: str, tool_id: str | None = None) -> list[dict[str, Any]]:
    """A text-editor `create` of `path` and its result block."""
    tid = tool_id or _tool_id()
    return [
        {
            "type": "server_tool_use",
            "id": tid,
            "name": "text_editor_code_execution",
            "input": {"command": "create", "path": path, "file_text": file_text},
        },
        {
            "type": "text_editor_code_execution_tool_result",
            "tool_use_id": tid,
            "content": {"type": "text_editor_code_execution_create_result", "is_file_update": False},
        },
    ]


def model_info(model_id: str, spec: ModelSpec) -> dict[str, Any]:
    """`GET /v1/models/{id}`'s answer, capabilities and all."""
    yes, no = {"supported": True}, {"supported": False}
    fifth = spec.generation >= 5
    return {
        "type": "model",
        "id": model_id,
        "display_name": spec.display_name,
        "created_at": iso(1.7e9),
        "lifecycle": spec.lifecycle,
        "deprecated_at": iso(1.75e9) if spec.lifecycle != "active" else None,
        "retires_at": spec.retires_at,
        "max_input_tokens": spec.max_input_tokens,
        "max_tokens": spec.max_tokens,
        "capabilities": {
            "batch": yes, "citations": yes, "code_execution": yes, "image_input": yes, "pdf_input": yes,
            "structured_outputs": yes,
            "context_management": {"supported": True, "clear_tool_uses_20250919": yes, "compact_20260112": yes},
            "effort": {"supported": True, "low": yes, "medium": yes, "high": yes, "max": yes},
            "server_tools": {
                "supported": spec.code_execution, "code_execution": yes if spec.code_execution else no,
                "web_search": yes,
            },
            "thinking": {
                "supported": True,
                "types": {
                    "adaptive": yes, "enabled": no if fifth else yes, "disabled": no if fifth else yes,
                    "between_tools": yes if fifth else no,
                },
            },
        },
    }


def _default_responder(body: dict[str, Any]) -> Reply:
    return Reply([text("ok")])


def _pieces(s: str, n: int = 3) -> list[str]:
    """Split `s` into about `n` non-empty pieces (one empty piece for an empty string)."""
    if not s:
        return [""]
    size = max(1, -(-len(s) // n))
    return [s[i : i + size] for i in range(0, len(s), size)]


class FakeAnthropic:
    """A fake Anthropic API; see the module docstring."""

    def __init__(self, api_key: str = "sk-ant-test") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.responder: Responder = _default_responder
        self.faults: Faults | None = None
        """Random failures of message requests (a chaos run)."""
        self.models: dict[str, ModelSpec] = dict(KNOWN_MODELS)
        """Model id -> what it is; requests naming any other model get 404 `not_found_error`."""
        self.count_token_requests: list[dict[str, Any]] = []
        self.containers: dict[str, float] = {}
        """Container id -> its current `expires_at` (rolls forward on each use)."""
        self.container_ttl = DEFAULT_CONTAINER_TTL
        self.container_created: dict[str, float] = {}
        self.gone_containers: set[str] = set()
        self.restored: list[str] = []
        """Containers a request named after their `expires_at`: checkpointed, then restored."""
        self.max_concurrent_per_container: dict[str, int] = {}
        self.max_in_flight = 0
        self.files: dict[str, _File] = {}
        self.container_files: dict[str, dict[str, bytes]] = {}
        """Container id -> the files code wrote in it, by path (only `$OUTPUT_DIR`'s come back)."""
        self._signatures: dict[str, str] = {}
        self._refused_turns: set[str] = set()
        self.uploaded: list[dict[str, Any]] = []
        self.downloads: list[str] = []
        self.context_window: int | None = None
        """Largest prompt (in tokens, after context editing) a request may have; None: the model's."""
        self.cache = PromptCache()
        self.usages: list[dict[str, Any]] = []
        """The `usage` of every answered request, in order."""
        self.clock_offset = 0.0
        self._queue: list[Reply | ErrorReply] = []
        self._download_failures: dict[str, _Download] = {}
        self._counters = _Counters()
        self._n_container = 0
        self._n_file = 0
        self._n_msg = 0
        self._n_req = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.skills = SkillsAPI(self._error)
        """The Skills API, and what `container.skills` may name."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> str:
        """Start listening on an ephemeral port; return the base URL (no /v1)."""
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._request_id, self._auth])
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/v1/models/{model_id}", self._model)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files", self._list_files)
        app.router.add_get("/v1/files/{file_id}", self._metadata)
        app.router.add_delete("/v1/files/{file_id}", self._delete_file)
        app.router.add_get("/v1/files/{file_id}/content", self._download)
        self.skills.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ test controls

    def enqueue(self, *responses: Reply | ErrorReply) -> None:
        """The next requests to /v1/messages get these answers, in order."""
        self._queue.extend(responses)

    @property
    def pending(self) -> int:
        """How many enqueued answers are not used yet."""
        return len(self._queue)

    def now(self) -> float:
        """The fake's clock (wall time plus `advance`d seconds), used by the prompt cache."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass for the prompt cache (entries last 5 minutes)."""
        self.clock_offset += seconds

    def new_container(self, ttl: float | None = None) -> str:
        """Create a container as a code-execution request would; return its id."""
        self._n_container += 1
        cid = f"container_{self._n_container}"
        self.containers[cid] = time.time() + (self.container_ttl if ttl is None else ttl)
        self.container_created[cid] = time.time()
        return cid

    def expire(self, container_id: str, idle_seconds: float = 1.0) -> None:
        """Let `expires_at` pass (idle for `idle_seconds`): as the API does, the next request
        naming the container restores it."""
        self.containers[container_id] = time.time() - idle_seconds

    def destroy(self, container_id: str) -> None:
        """The container is really gone (past its lifetime or deleted): requests naming it fail."""
        self.gone_containers.add(container_id)

    def add_file(
        self,
        filename: str,
        content: bytes | None = None,
        *,
        size: int | None = None,
        mime_type: str = "text/plain",
        downloadable: bool = True,
    ) -> str:
        """Register a file (as if code in a container wrote it); return its id.

        With `content=None`, `size` deterministic bytes are generated while downloading.
        """
        fid = self._next_file_id()
        if content is None:
            f = _File(fid, filename, mime_type, size or 0, time.time(), downloadable)
        else:
            digest = hashlib.sha256(content).hexdigest()
            f = _File(fid, filename, mime_type, len(content), time.time(), downloadable, content, digest=digest)
        self.files[fid] = f
        return fid

    def expected_sha256(self, file_id: str) -> str:
        """sha256 hex of a file's bytes."""
        return self.files[file_id].sha256

    def fail_download(self, file_id: str, status: int = 500, after_bytes: int | None = None) -> None:
        """Make downloads of `file_id` fail with `status`, or drop the connection after `after_bytes`."""
        self._download_failures[file_id] = _Download(status, after_bytes)

    def stall_download(self, file_id: str, seconds: float) -> None:
        """Downloads of `file_id` send the headers, then nothing for `seconds`, then the bytes."""
        self._download_failures[file_id] = _Download(200, stall_seconds=seconds)

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def _request_id(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self._n_req += 1
        rid = f"req_fake{self._n_req:06d}"
        request[REQUEST_ID] = rid
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return self._error(request, 404, "not_found_error", f"Not found: {request.path}")
        except web.HTTPMethodNotAllowed:
            return self._error(request, 405, "invalid_request_error", f"Method not allowed: {request.method}")

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        bearer = request.headers.get("Authorization", "")
        keys = {request.headers.get("x-api-key"), bearer[7:] if bearer.startswith("Bearer ") else None}
        if self.api_key not in keys:
            return self._error(request, 401, "authentication_error", "invalid x-api-key")
        return await handler(request)

    def _error(
        self,
        request: web.Request,
        status: int,
        type_: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> web.Response:
        error: dict[str, Any] = {"type": type_, "message": message}
        if details is not None:
            error["details"] = details
        rid = request.get(REQUEST_ID, "req_fake")
        body = {"type": "error", "error": error, "request_id": rid}
        return web.json_response(body, status=status, headers={"request-id": rid, **(headers or {})})

    # ------------------------------------------------------------------ /v1/messages

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return self._error(request, 400, "invalid_request_error", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return self._error(request, 400, "invalid_request_error", "The request body must be an object.")
        self.requests.append(body)
        self.request_headers.append(dict(request.headers))
        problem = self._validate(body)
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        refused = self._model_refusal(body)
        if refused is not None:
            return self._error(request, *refused)
        requested, problem = self._requested_container(body)
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        uses_code = any(
            isinstance(t, dict) and str(t.get("type", "")).startswith(CODE_EXECUTION_TOOL_PREFIX)
            for t in body.get("tools") or []
        )
        problem = self.skills.container_problem(body, uses_code)
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        prompt, applied, problem = self._prompt(request, body)
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        async with _InFlight(self, requested) as slot:
            answer = self._refused_again(body) or self._fault(body) or await self._next_answer(body)
            if isinstance(answer, ErrorReply):
                e = answer
                return self._error(request, e.status, e.type, e.message, e.headers, e.details)
            cid = answer.container_id or requested or (self.new_container() if uses_code else None)
            answer = self._as_written(answer, self.models[body["model"]], cid, body)
            if answer.stop_reason == "refusal":
                self._refused_turns.add(_key(body["messages"][-1].get("content")))
            booked = self._bill(prompt, applied, answer)
            if cid is not None:
                self.container_created.setdefault(cid, time.time())
                self.containers[cid] = time.time() + self.container_ttl
            slot.bind(cid)
            container = {"id": cid, "expires_at": iso(self.containers[cid])} if cid and answer.send_container else None
            if answer.delay:
                await asyncio.sleep(answer.delay)
            if body.get("stream"):
                return await self._stream(request, body, answer, container, booked)
            if answer.stream_error is not None:
                e = answer.stream_error
                return self._error(request, e.status, e.type, e.message, e.headers, e.details)
            message = self._message(body, answer, container, booked)
            return web.json_response(message, headers={"request-id": request[REQUEST_ID]})

    def _fault(self, body: dict[str, Any]) -> Reply | ErrorReply | None:
        """With `faults` set: now and then a rate limit, a server error, an overload, or a
        stream cut before its first words (each request at most once)."""
        if self.faults is None or not self.faults.strike(json.dumps(body.get("messages"), sort_keys=True)):
            return None
        kinds = ["429", "500", "529", *(["cut stream"] if body.get("stream") else [])]
        kind = self.faults.pick(kinds)
        if kind == "429":
            return ErrorReply(429, "rate_limit_error", "Number of requests has exceeded your rate limit",
                              headers={"retry-after": "1"})
        if kind == "500":
            return ErrorReply(500, "api_error", "Internal server error")
        overloaded = ErrorReply(529, "overloaded_error", "Overloaded")
        return Reply([], stream_error=overloaded) if kind == "cut stream" else overloaded

    def _assistant_problem(self, i: int, content: list[Any]) -> str:
        """What the API refuses in an assistant message sent back: a thinking block changed (its
        signature no longer matches), or a server tool call without its result."""
        results = {b.get("tool_use_id") for b in content if isinstance(b, dict) and str(b.get("type", "")).endswith("_tool_result")}
        for j, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "thinking" and self._signatures.get(str(block.get("signature"))) != block.get("thinking"):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            sealed = sealed_field_problem(i, j, block)
            if sealed:
                return sealed
            if block.get("type") == "server_tool_use" and block.get("id") not in results:
                return (
                    f"messages.{i}.content.{j}: `server_tool_use` block with id `{block.get('id')}` was found without"
                    " a corresponding result block"
                )
        return ""

    def _validate(self, body: dict[str, Any], required: tuple[str, ...] = ("model", "max_tokens", "messages")) -> str:
        for key in required:
            if key not in body:
                return f"{key}: Field required"
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        problem = web_tool_problem(tools)
        if problem:
            return problem
        for i, tool in enumerate(tools):
            kind = str(tool.get("type", "")) if isinstance(tool, dict) else ""
            if kind.startswith(CODE_EXECUTION_TOOL_PREFIX) and kind not in CODE_EXECUTION_TOOL_VERSIONS:
                expected = ", ".join(f"'{v}'" for v in CODE_EXECUTION_TOOL_VERSIONS)
                return f"tools.{i}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {expected}"
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        known = set(self.files)
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            content = m.get("content")
            if isinstance(content, list) and m.get("role") == "assistant":
                problem = self._assistant_problem(i, content)
                if problem:
                    return problem
            if isinstance(content, list):
                for block in content:
                    if isinstance(block, dict) and block.get("type") == "container_upload":
                        if block.get("file_id") not in known:
                            return f"File '{block.get('file_id')}' not found"
            elif not isinstance(content, str):
                return f"messages.{i}.content: Input should be a valid string or list"
        return ""

    def _prompt(
        self, request: web.Request, body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
        """The prompt after context editing, the edits applied, or the API's refusal."""
        problem = context_edit_problem(body, _betas(request)) or breakpoint_problem(body)
        if problem:
            return body, [], problem
        prompt, applied = apply_context_edits(body)
        tokens = count_tokens(prompt)
        window = self.window(body["model"])
        if tokens > window:
            return prompt, applied, f"prompt is too long: {tokens} tokens > {window} maximum"
        return prompt, applied, ""

    def window(self, model: str) -> int:
        """The largest prompt a request to `model` may have (`context_window` overrides the model's)."""
        return self.context_window or self.models[model].max_input_tokens

    def _bill(self, prompt: dict[str, Any], applied: list[dict[str, Any]], answer: Reply) -> dict[str, Any]:
        """Book the request's input through the prompt cache and its output, as `usage` reports."""
        bill: CacheBill = self.cache.bill(prompt, self.now())
        output = sum(value_tokens(b) for b in answer.content if not str(b.get("type", "")).endswith("_tool_result"))
        usage: dict[str, Any] = {
            "input_tokens": bill.input_tokens,
            "cache_creation_input_tokens": bill.cache_creation_input_tokens,
            "cache_read_input_tokens": bill.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": bill.ephemeral_5m_input_tokens,
                "ephemeral_1h_input_tokens": bill.ephemeral_1h_input_tokens,
            },
            "output_tokens": max(1, output),
            "service_tier": "standard",
        }
        counts = server_tool_counts(answer.content)
        if any(counts.values()):
            usage["server_tool_use"] = counts
        usage.update(answer.usage)  # a test may set the counts it needs
        booked: dict[str, Any] = {"usage": usage}
        if "context_management" in prompt:
            booked["context_management"] = {"applied_edits": applied}
        self.usages.append(usage)
        return booked

    async def _count_tokens(self, request: web.Request) -> web.Response:
        """POST /v1/messages/count_tokens: the same validation as a message and the prompt's size
        after context editing; no answer, nothing billed."""
        try:
            body = await request.json()
        except ValueError:
            return self._error(request, 400, "invalid_request_error", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return self._error(request, 400, "invalid_request_error", "The request body must be an object.")
        self.count_token_requests.append(body)
        problem = self._validate(body, required=("model", "messages"))
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        refused = self._model_refusal(body, counting=True)
        if refused is not None:
            return self._error(request, *refused)
        problem = context_edit_problem(body, _betas(request)) or breakpoint_problem(body)
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        prompt, _ = apply_context_edits(body)
        answer: dict[str, Any] = {"input_tokens": count_tokens(prompt)}
        if "context_management" in body:
            answer["context_management"] = {"original_input_tokens": count_tokens(body)}
        return web.json_response(answer, headers={"request-id": request[REQUEST_ID]})

    async def _model(self, request: web.Request) -> web.Response:
        """GET /v1/models/{model_id}."""
        model_id = request.match_info["model_id"]
        if model_id not in self.models:
            return self._error(request, 404, "not_found_error", f"model: {model_id}")
        return web.json_response(model_info(model_id, self.models[model_id]), headers={"request-id": request[REQUEST_ID]})

    def _model_refusal(self, body: dict[str, Any], *, counting: bool = False) -> tuple[int, str, str] | None:
        """What the API answers a request its model cannot take: (status, type, message)."""
        model = body["model"]
        spec = self.models.get(model)
        if spec is None:
            return 404, "not_found_error", f"model: {model}"
        if spec.lifecycle == "retired":
            return 404, "not_found_error", f"model: {model} was retired on {spec.retires_at}"
        uses_code = any(
            isinstance(t, dict) and str(t.get("type", "")).startswith(CODE_EXECUTION_TOOL_PREFIX)
            for t in body.get("tools") or []
        )
        if uses_code and not spec.code_execution:
            return 400, "invalid_request_error", f"tools: the code execution tool is not supported by {model}"
        effort = (body.get("output_config") or {}).get("effort") if isinstance(body.get("output_config"), dict) else None
        if effort is not None and effort not in EFFORT_LEVELS:
            return 400, "invalid_request_error", "output_config.effort: Input should be 'low', 'medium', 'high' or 'max'"
        if not counting and body.get("max_tokens", 0) > spec.max_tokens:
            return 400, "invalid_request_error", (
                f"max_tokens: {body['max_tokens']} > {spec.max_tokens}, which is the maximum allowed number of"
                f" output tokens for {model}"
            )
        if spec.generation >= 5:
            for name in SAMPLING_PARAMETERS:
                if name in body:
                    return 400, "invalid_request_error", f"{name}: is not supported by {model}"
            if isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "disabled":
                return 400, "invalid_request_error", f"thinking.type: 'disabled' is not supported by {model}"
            choice = body.get("tool_choice")
            if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
                return 400, "invalid_request_error", f"tool_choice: forced tool use is not supported by {model}"
        return None

    def _requested_container(self, body: dict[str, Any]) -> tuple[str | None, str]:
        raw = body.get("container")
        cid = raw.get("id") if isinstance(raw, dict) else raw
        if not cid:
            return None, ""
        if cid not in self.containers:
            return None, f"container_id '{cid}' not found"
        lifetime_over = self.container_created.get(cid, 0.0) + CONTAINER_LIFETIME <= time.time()
        if cid in self.gone_containers or lifetime_over:
            return None, f"Container '{cid}' has expired"
        if self.containers[cid] <= time.time():
            self.restored.append(cid)
        return cid, ""

    def _refused_again(self, body: dict[str, Any]) -> Reply | None:
        """A request that replays a refused exchange is refused again (the docs: reset the context)."""
        earlier = body["messages"][:-1]
        if any(m.get("role") == "user" and _key(m.get("content")) in self._refused_turns for m in earlier):
            return Reply([], stop_reason="refusal", stop_details={"type": "refusal", "category": None, "explanation": None})
        return None

    def _as_written(self, answer: Reply, spec: ModelSpec, cid: str | None, body: dict[str, Any]) -> Reply:
        """The scripted answer as the API would send it: output files from what the code wrote,
        fetches the tool settings refuse as errors, and on 5.x models the words before a tool
        call as signed `thinking` blocks."""
        commands: dict[str, str] = {}
        refused: dict[str, str] = {}
        searched = searched_urls(body)
        content: list[dict[str, Any]] = []
        for block in answer.content:
            block = dict(block)
            if block.get("type") == "web_search_tool_result":
                searched |= {r.get("url") for r in block.get("content") or [] if isinstance(r, dict)}
            if block.get("type") == "server_tool_use" and block.get("name") == "web_fetch":
                code = fetch_refusal(body, str((block.get("input") or {}).get("url", "")), searched)
                if code is not None:
                    refused[str(block.get("id"))] = code
            elif block.get("type") == "web_fetch_tool_result" and block.get("tool_use_id") in refused:
                block = fetch_error(str(block["tool_use_id"]), refused[str(block["tool_use_id"])])
            if block.get("type") == "server_tool_use":
                data = block.get("input") or {}
                commands[str(block.get("id"))] = str(data.get("command", ""))
                if block.get("name") == "text_editor_code_execution" and data.get("command") == "create" and cid:
                    self.container_files.setdefault(cid, {})[str(data.get("path"))] = str(data.get("file_text", "")).encode()
            elif block.get("type") == "bash_code_execution_tool_result":
                block = self._capture_outputs(block, commands.get(str(block.get("tool_use_id")), ""), cid)
            content.append(block)
        if spec.generation >= 5:
            last_tool = max((i for i, b in enumerate(content) if b.get("type") == "server_tool_use"), default=-1)
            content = [self._thinking(b) if i < last_tool and b.get("type") == "text" else b for i, b in enumerate(content)]
        return replace(answer, content=content)

    def _capture_outputs(self, result: dict[str, Any], command: str, cid: str | None) -> dict[str, Any]:
        """Files the run wrote go into the container; those at the top level of `$OUTPUT_DIR`
        (written there, or copied there by `cp`) come back in the result."""
        writes: dict[str, bytes] = result.pop(WRITES, {})
        files = self.container_files.setdefault(cid or "", {})
        captured: list[tuple[str, bytes]] = []
        for path, data in writes.items():
            if path.startswith(OUTPUT_DIR + "/") and "/" not in path[len(OUTPUT_DIR) + 1 :]:
                captured.append((path[len(OUTPUT_DIR) + 1 :], data))
            else:
                files[path] = data
        for match in _COPY_TO_OUTPUT.finditer(command):
            for source in match.group(1).split():
                found = next((p for p in files if p == source or p.rsplit("/", 1)[-1] == source.rsplit("/", 1)[-1]), None)
                if found is not None:
                    captured.append((found.rsplit("/", 1)[-1], files[found]))
        if not captured or not isinstance(result.get("content"), dict):
            return result
        inner = dict(result["content"])
        outputs = list(inner.get("content") or [])
        outputs += [{"type": "bash_code_execution_output", "file_id": self.add_file(name, data)} for name, data in captured]
        return {**result, "content": {**inner, "content": outputs}}

    def _thinking(self, block: dict[str, Any]) -> dict[str, Any]:
        words = str(block.get("text", ""))
        signature = base64.b64encode(hashlib.sha256(f"{len(self._signatures)}:{words}".encode()).digest()).decode()
        self._signatures[signature] = words
        return {"type": "thinking", "thinking": words, "signature": signature}

    async def _next_answer(self, body: dict[str, Any]) -> Reply | ErrorReply:
        if self._queue:
            return self._queue.pop(0)
        answer = self.responder(body)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer

    def _message(
        self, body: dict[str, Any], answer: Reply, container: dict[str, Any] | None, booked: dict[str, Any]
    ) -> dict[str, Any]:
        """The Message object; `booked` holds its `usage` (and `context_management`)."""
        self._n_msg += 1
        return {**booked, **{
            "id": f"msg_fake{self._n_msg:06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-sonnet-4-5"),
            "content": answer.content,
            "stop_reason": answer.stop_reason,
            "stop_sequence": None,
            "stop_details": answer.stop_details,
            "container": container,
        }}

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        answer: Reply,
        container: dict[str, Any] | None,
        booked: dict[str, Any],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": request[REQUEST_ID],
            }
        )
        await resp.prepare(request)
        message = self._message(body, answer, container, booked)
        usage = message.pop("usage")
        management = message.pop("context_management", None)
        start = {**message, "content": [], "stop_reason": None, "stop_details": None, "container": None}
        start["usage"] = {**usage, "output_tokens": 1}
        try:
            async for event in self._events(start, answer, usage, container, management):
                await resp.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
                if answer.chunk_delay:
                    await asyncio.sleep(answer.chunk_delay)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away mid-stream
        return resp

    @staticmethod
    async def _events(
        start: dict[str, Any],
        answer: Reply,
        usage: dict[str, Any],
        container: dict[str, Any] | None,
        management: dict[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The SSE events of one streamed message, in the API's order."""
        yield {"type": "message_start", "message": start}
        yield {"type": "ping"}
        for index, block in enumerate(answer.content):
            kind = block.get("type")
            if kind == "text":
                started = {**block, "text": ""} | ({"citations": []} if block.get("citations") else {})
                yield {"type": "content_block_start", "index": index, "content_block": started}
                for citation in block.get("citations") or []:
                    yield {"type": "content_block_delta", "index": index,
                           "delta": {"type": "citations_delta", "citation": citation}}
                for piece in _pieces(block.get("text", "")):
                    yield {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    }
            elif kind in ("server_tool_use", "tool_use"):
                yield {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
                for piece in _pieces(json.dumps(block.get("input", {}))):
                    yield {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    }
            elif kind == "thinking":
                empty = {**block, "thinking": "", "signature": ""}
                yield {"type": "content_block_start", "index": index, "content_block": empty}
                for piece in _pieces(block.get("thinking", "")):
                    yield {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": piece},
                    }
                yield {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": block.get("signature", "")},
                }
            else:
                yield {"type": "content_block_start", "index": index, "content_block": block}
            yield {"type": "content_block_stop", "index": index}
        if answer.stream_error is not None:
            e = answer.stream_error
            yield {"type": "error", "error": {"type": e.type, "message": e.message}}
            return
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {
                "stop_reason": answer.stop_reason, "stop_sequence": None, "container": container,
                "stop_details": answer.stop_details,
            },
            "usage": {
                "output_tokens": usage["output_tokens"],
                "input_tokens": usage["input_tokens"],
                "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                "cache_read_input_tokens": usage["cache_read_input_tokens"],
                **({"server_tool_use": usage["server_tool_use"]} if "server_tool_use" in usage else {}),
            },
        }
        if management is not None:
            delta["context_management"] = management
        yield delta
        yield {"type": "message_stop"}

    # ------------------------------------------------------------------ Files API

    async def _metadata(self, request: web.Request) -> web.Response:
        f = self.files.get(request.match_info["file_id"])
        if f is None:
            return self._not_found(request)
        return web.json_response(f.metadata(), headers={"request-id": request[REQUEST_ID]})

    async def _delete_file(self, request: web.Request) -> web.Response:
        f = self.files.pop(request.match_info["file_id"], None)
        if f is None:
            return self._not_found(request)
        return web.json_response({"id": f.id, "type": "file_deleted"}, headers={"request-id": request[REQUEST_ID]})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        fid = request.match_info["file_id"]
        self.downloads.append(fid)
        f = self.files.get(fid)
        if f is None:
            return self._not_found(request)
        if not f.downloadable:
            return self._error(
                request,
                400,
                "invalid_request_error",
                f"File '{fid}' is not downloadable",
                details={"error_code": "file_not_downloadable"},
            )
        failure = self._download_failures.get(fid)
        if failure is not None and failure.after_bytes is None and not failure.stall_seconds:
            return self._error(request, failure.status, "api_error", "Internal server error")
        resp = web.StreamResponse(
            headers={
                "Content-Type": f.mime_type,
                "Content-Disposition": f'attachment; filename="{f.filename}"',
                "request-id": request[REQUEST_ID],
            }
        )
        resp.content_length = f.size
        await resp.prepare(request)
        if failure is not None and failure.stall_seconds:
            await asyncio.sleep(failure.stall_seconds)
        sent = 0
        for block in f.chunks():
            if failure is not None and failure.after_bytes is not None and sent + len(block) > failure.after_bytes:
                await resp.write(block[: failure.after_bytes - sent])
                if request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write(block)
            sent += len(block)
        await resp.write_eof()
        return resp

    async def _upload(self, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            return self._error(request, 400, "invalid_request_error", "Expected multipart/form-data")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        found: tuple[str, str, int, str, bytes | None] | None = None
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name != "file":
                fields[part.name or ""] = await part.text()
                continue
            h, size, kept = hashlib.sha256(), 0, bytearray()
            while block := await part.read_chunk(CHUNK):
                h.update(block)
                size += len(block)
                if size < KEEP_LIMIT:
                    kept += block
            mime = part.headers.get("Content-Type", "application/octet-stream")
            name = (part.filename or "unnamed").replace("\\", "/").rsplit("/", 1)[-1]
            found = (name, mime, size, h.hexdigest(), bytes(kept) if size < KEEP_LIMIT else None)
        if found is None:
            return self._error(request, 400, "invalid_request_error", "file: Field required")
        name, mime, size, digest, content = found
        fid = self._next_file_id()
        now = time.time()
        expires = fields.get("expires_in_seconds")
        expires_at = now + int(expires) if expires else None
        f = _File(fid, name, mime, size, now, False, content, expires_at, digest)
        self.files[fid] = f
        self.uploaded.append(
            {"id": fid, "filename": name, "mime_type": mime, "size": size, "sha256": digest, "content": content}
        )
        return web.json_response(f.metadata(), headers={"request-id": request[REQUEST_ID]})

    async def _list_files(self, request: web.Request) -> web.Response:
        """GET /v1/files: newest first, `limit` (1-1000, default 20) a page, `page` the cursor."""
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return self._error(request, 400, "invalid_request_error", "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return self._error(request, 400, "invalid_request_error", "limit: must be between 1 and 1000")
        newest_first = sorted(self.files.values(), key=lambda f: (f.created_at, f.id), reverse=True)
        start = 0
        if "page" in request.query:
            cursor = request.query["page"].removeprefix("page_")
            ids = [f.id for f in newest_first]
            if cursor not in ids:
                return self._error(request, 400, "invalid_request_error", "page: invalid page cursor")
            start = ids.index(cursor) + 1
        page = newest_first[start : start + limit]
        more = start + limit < len(newest_first)
        body = {
            "data": [f.metadata() for f in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": more,
            "next_page": f"page_{page[-1].id}" if more and page else None,
        }
        return web.json_response(body, headers={"request-id": request[REQUEST_ID]})

    def _not_found(self, request: web.Request) -> web.Response:
        return self._error(request, 404, "not_found_error", f"File not found: {request.match_info['file_id']}")

    def _next_file_id(self) -> str:
        self._n_file += 1
        return f"file_011fake{self._n_file:06d}"


def _key(content: Any) -> str:
    """A message's content as a key: the same content, the same key."""
    return json.dumps(content, sort_keys=True)


def _betas(request: web.Request) -> set[str]:
    """The `anthropic-beta` header's names (the SDK joins several with commas)."""
    return {b.strip() for b in request.headers.get("anthropic-beta", "").split(",") if b.strip()}


class _InFlight:
    """Counts a request as in flight (overall and per container) while inside `async with`."""

    def __init__(self, fake: FakeAnthropic, cid: str | None) -> None:
        self.fake, self.cid = fake, cid

    def _add(self, cid: str | None, n: int) -> None:
        if cid is None:
            return
        per = self.fake._counters.per_container
        per[cid] = per.get(cid, 0) + n
        peak = self.fake.max_concurrent_per_container
        peak[cid] = max(peak.get(cid, 0), per[cid])

    def bind(self, cid: str | None) -> None:
        """Count the request against `cid` from now on (a new or reply-chosen container)."""
        if cid != self.cid:
            self._add(self.cid, -1)
            self._add(cid, 1)
            self.cid = cid

    async def __aenter__(self) -> _InFlight:
        c = self.fake._counters
        c.in_flight += 1
        self.fake.max_in_flight = max(self.fake.max_in_flight, c.in_flight)
        self._add(self.cid, 1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.fake._counters.in_flight -= 1
        self._add(self.cid, -1)
