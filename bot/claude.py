"""One turn of Claude with the code execution tool: stream, continue `pause_turn`, keep the container."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
from anthropic.types import ContentBlock, Message

from storage import Usage

from .context import ContextWindow, too_long
from .files import output_file_ids, uploaded_file_ids
from .tasks import run_until

# Claude may pause a long turn; this bounds how often we continue one turn.
MAX_CONTINUATIONS = 20
# A container whose `expires_at` passed this long ago has been idle for a long time; one
# that then keeps failing with server errors is given up for a fresh one.
LONG_IDLE_SECONDS = 3600
DEFAULT_TURN_DEADLINE_SECONDS = 15 * 60
# Words of a 4xx that say the named container itself is gone (not some other problem).
CONTAINER_GONE_WORDS = ("not found", "not_found", "expired", "invalid", "does not exist", "no longer", "unknown")
_NAMES_CONTAINER = re.compile(r"\bcontainers?\b")
# Prompt caching: the system prompt, the previous request's end and the newest block.
EPHEMERAL: dict[str, Any] = {"type": "ephemeral"}

DEFAULT_SYSTEM_PROMPT = (
    "You are threadbox, a helpful assistant in a Slack thread. You can run code in a sandboxed"
    " container that persists for the whole thread: files you write stay there for later"
    " messages. Files you create in the container are uploaded to the thread for the user."
    " In shared threads each message starts with its author's name."
    " Answer in concise Markdown."
)


class TurnObserver(Protocol):
    """Receives progress while a turn runs (the Slack reply renders it)."""

    async def on_text(self, delta: str) -> None: ...

    async def on_tool_start(self, tool_id: str, title: str) -> None: ...

    async def on_tool_end(self, tool_id: str, ok: bool, excerpt: str) -> None: ...


@dataclass
class TurnResult:
    """What a finished (or failed) turn leaves behind."""

    assistant_content: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    stop_reason: str | None = None
    container_id: str | None = None
    container_expires_at: float | None = None
    container_replaced: bool = False
    output_file_ids: list[str] = field(default_factory=list)
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    context_trimmed: bool = False
    """Older output was left out of the request for the first time at this size."""
    stopped: bool = False
    """Someone asked to stop the turn (`!stop`, the Stop button) before it ended."""
    earlier_history: list[dict[str, Any]] | None = None
    """The thread's history as this turn sent it, when it had to leave out files the Files API
    no longer has: stored in its place, so later turns do not hit the same refusal."""


class ClaudeTurns:
    """Runs turns against the Messages API; the SDK handles retries and `ANTHROPIC_BASE_URL`."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        *,
        model: str,
        tool_version: str,
        max_tokens: int,
        context_window: int,
        system_prompt: str | None = None,
        deadline_seconds: float = DEFAULT_TURN_DEADLINE_SECONDS,
    ) -> None:
        self.client = client
        self.deadline_seconds = deadline_seconds
        self.model = model
        self.tool_version = tool_version
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        # Byte-for-byte the same on every request, so their cache entries keep matching.
        self.system: list[dict[str, Any]] = [{"type": "text", "text": self.system_prompt, "cache_control": EPHEMERAL}]
        self.tools: list[dict[str, Any]] = [{"type": self.tool_version, "name": "code_execution"}]
        self.context = ContextWindow(context_window, overhead_chars=len(json.dumps([self.system, self.tools])))

    async def run(
        self,
        history: list[dict[str, Any]],
        user_content: list[dict[str, Any]],
        container_id: str | None,
        container_expires_at: float | None,
        observer: TurnObserver,
        stop: asyncio.Event | None = None,
    ) -> TurnResult:
        """Answer one user message. Never raises for API failures: they land in `result.error`.
        Setting `stop` ends the turn early; what it did until then stays in the result.

        The stored container is always sent: past its `expires_at` the API restores it. It is
        replaced only when the API says it is gone, or (once) when a long-idle one keeps
        failing with a server error.
        """
        result = TurnResult(container_id=container_id, container_expires_at=container_expires_at)
        messages = [*history, {"role": "user", "content": user_content}]
        try:
            async with asyncio.timeout(self.deadline_seconds):
                work = self._run_until_done(messages, result, observer)
                result.stopped = await run_until(stop or asyncio.Event(), work)
        except TimeoutError:
            result.error = (
                f"This turn ran longer than {_duration(self.deadline_seconds)}, so I stopped it."
                " What was done so far stays; ask again to continue."
            )
        return result

    async def _run_until_done(
        self, base: list[dict[str, Any]], result: TurnResult, observer: TurnObserver
    ) -> None:
        idle_retry = _long_idle(result.container_expires_at)
        plan = self.context.fit(base)
        # The thread hears once, when trimming starts (base[:-2] is what the last turn sent).
        result.context_trimmed = plan.trimmed and not (len(base) > 1 and self.context.fit(base[:-2]).trimmed)
        shed_more = True
        continuations = 0
        while continuations < MAX_CONTINUATIONS:
            messages = plan.messages
            if result.assistant_content:
                messages = [*plan.messages, {"role": "assistant", "content": result.assistant_content}]
            try:
                message = await self._stream_once(messages, result, observer)
            except anthropic.APIStatusError as error:
                fresh_start = not result.assistant_content
                if result.container_id and fresh_start and container_is_gone(error, result.container_id):
                    self._forget_container(result)
                    continue
                if result.container_id and fresh_start and idle_retry and error.status_code >= 500:
                    idle_retry = False
                    self._forget_container(result)
                    continue
                missing = missing_file_ids(error, messages)
                if missing:
                    base = without_files(base, missing)
                    result.earlier_history = base[:-1]
                    plan = self.context.fit(base)
                    continue
                counted = too_long(_api_message(error)) if error.status_code == 400 else None
                if counted is not None and shed_more:
                    # The estimate was low: correct it to what the API counted, keep only this turn.
                    shed_more = False
                    self.context.learn(messages, *counted)
                    refit = self.context.fit(base, keep_turns=1)
                    result.context_trimmed = refit.trimmed and not plan.trimmed
                    plan = refit
                    continue
                result.error = describe_api_error(error)
                return
            except anthropic.APIError as error:
                result.error = describe_api_error(error)
                return
            self._absorb(message, result)
            if message.stop_reason != "pause_turn":
                return
            continuations += 1
        result.error = "Claude kept pausing this turn; stopped after too many continuations."

    @staticmethod
    def _forget_container(result: TurnResult) -> None:
        result.container_id, result.container_expires_at, result.container_replaced = None, None, True

    async def _stream_once(self, messages: list[dict[str, Any]], result: TurnResult, observer: TurnObserver) -> Message:
        """One streamed request. Cut short (a stop, the deadline), what it used so far is still
        booked: its input, the bulk of a long thread's cost, is known from its first event."""
        tools: Any = self.tools
        async with self.client.messages.stream(
            model=self.model,
            max_tokens=self.max_tokens,
            system=self.system,  # type: ignore[arg-type]
            messages=with_cache_anchor(messages),  # type: ignore[arg-type]
            tools=tools,
            container=result.container_id or anthropic.omit,
            cache_control=EPHEMERAL,  # type: ignore[arg-type]
        ) as stream:
            started = False
            try:
                async for event in stream:
                    started = True
                    if event.type == "text":
                        await observer.on_text(event.text)
                    elif event.type == "content_block_stop":
                        await _report_block(event.content_block, observer)
            except asyncio.CancelledError:
                if started:
                    result.usage = result.usage + message_usage(stream.current_message_snapshot)
                raise
            return await stream.get_final_message()

    @staticmethod
    def _absorb(message: Message, result: TurnResult) -> None:
        result.stop_reason = message.stop_reason
        result.usage = result.usage + message_usage(message)
        for block in message.content:
            dumped = block.model_dump(mode="json", exclude_none=True)
            result.assistant_content.append(dumped)
            if block.type == "text":
                result.text += block.text
            result.output_file_ids.extend(output_file_ids(dumped))
        if message.container is not None:
            result.container_id = message.container.id
            result.container_expires_at = message.container.expires_at.timestamp()


def message_usage(message: Message) -> Usage:
    """What one response used, as the API reports it (while streaming: as reported so far)."""
    return Usage(
        input_tokens=message.usage.input_tokens,
        cache_creation_input_tokens=message.usage.cache_creation_input_tokens or 0,
        cache_read_input_tokens=message.usage.cache_read_input_tokens or 0,
        output_tokens=message.usage.output_tokens,
        code_runs=sum(block.type == "server_tool_use" for block in message.content),
    )


def with_cache_anchor(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A copy of `messages` with a breakpoint where the previous request of the thread ended.

    That request's automatic breakpoint was its newest block: the last user message before
    the newest message. Marking it explicitly finds that entry however many blocks the answer
    added since (the automatic breakpoint only looks 20 blocks back).
    """
    anchor = next((i for i in range(len(messages) - 2, -1, -1) if messages[i]["role"] == "user"), None)
    if anchor is None:
        return messages
    content = messages[anchor]["content"]
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    if not blocks:
        return messages
    blocks[-1] = {**blocks[-1], "cache_control": EPHEMERAL}
    marked = list(messages)
    marked[anchor] = {**messages[anchor], "content": blocks}
    return marked


async def _report_block(block: ContentBlock, observer: TurnObserver) -> None:
    if block.type == "server_tool_use":
        await observer.on_tool_start(block.id, tool_title(block.name, block.input))
    elif block.type.endswith("_tool_result") and hasattr(block, "tool_use_id"):
        ok, excerpt = tool_outcome(block.model_dump(mode="json", exclude_none=True))
        await observer.on_tool_end(block.tool_use_id, ok, excerpt)


def tool_title(name: str, tool_input: object) -> str:
    """A short human title for a code run: the command, or the file edit."""
    data = tool_input if isinstance(tool_input, dict) else {}
    if name == "bash_code_execution" and data.get("command"):
        return _one_line(str(data["command"]), 120)
    if name == "text_editor_code_execution":
        return _one_line(f"{data.get('command', 'edit')} {data.get('path', '')}".strip(), 120)
    if data.get("code"):
        return _one_line(str(data["code"]), 120)
    return name.replace("_", " ")


def tool_outcome(result_block: dict[str, Any], limit: int = 300) -> tuple[bool, str]:
    """(succeeded, short excerpt of output or the error) for a code-execution result block."""
    content = result_block.get("content") or {}
    if not isinstance(content, dict):
        return True, ""
    if "error_code" in content:
        return False, str(content["error_code"]).replace("_", " ")
    return_code = content.get("return_code", 0)
    stdout, stderr = str(content.get("stdout") or ""), str(content.get("stderr") or "")
    if return_code:
        return False, _tail(stderr or stdout, limit) or f"exit code {return_code}"
    return True, _tail(stdout, limit)


def _long_idle(expires_at: float | None) -> bool:
    return expires_at is not None and time.time() - expires_at > LONG_IDLE_SECONDS


def container_is_gone(error: anthropic.APIStatusError, container_id: str) -> bool:
    """A 4xx that names the container and says it is gone; any other refusal keeps it.

    What counts is the error's message and code: its type (`invalid_request_error`,
    `not_found_error`) says nothing about the container itself."""
    if error.status_code not in (400, 404, 410):
        return False
    said = f"{error.error_code or ''} {_api_message(error)}".lower()
    names_it = container_id.lower() in said or bool(_NAMES_CONTAINER.search(said))
    return names_it and any(word in said for word in CONTAINER_GONE_WORDS)


def missing_file_ids(error: anthropic.APIStatusError, messages: list[dict[str, Any]]) -> set[str]:
    """Files of `container_upload` blocks that a 4xx names: deleted from the Files API."""
    if error.status_code not in (400, 404):
        return set()
    said = _api_message(error)
    return {file_id for file_id in uploaded_file_ids(messages) if file_id in said}


def without_files(messages: list[dict[str, Any]], file_ids: set[str]) -> list[dict[str, Any]]:
    """The messages with those files' `container_upload` blocks replaced by a note for Claude."""

    def replace(block: Any) -> Any:
        if isinstance(block, dict) and block.get("type") == "container_upload" and block.get("file_id") in file_ids:
            return {"type": "text", "text": f"[A file shared here ({block['file_id']}) no longer exists.]"}
        return block

    return [
        {**message, "content": [replace(block) for block in message["content"]]}
        if isinstance(message.get("content"), list)
        else message
        for message in messages
    ]


def describe_api_error(error: anthropic.APIError) -> str:
    """Words for the thread: what went wrong and what to do about it."""
    request_id = getattr(error, "request_id", None)
    suffix = f" (request id `{request_id}`)" if request_id else ""
    if isinstance(error, anthropic.APITimeoutError):
        return "Claude took too long to answer. Please try again." + suffix
    if isinstance(error, anthropic.APIConnectionError):
        return "I couldn't reach the Claude API. Please try again in a moment."
    if isinstance(error, anthropic.RateLimitError):
        return "Claude is rate limited right now. Please try again in a minute." + suffix
    if isinstance(error, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
        return "The Claude API refused this app's credentials; please tell the app's admin." + suffix
    if isinstance(error, anthropic.APIStatusError) and error.status_code >= 500:
        return "Claude is overloaded or having trouble right now. Please try again shortly." + suffix
    if isinstance(error, anthropic.APIStatusError):
        return f"Claude could not handle this request: {_api_message(error)}" + suffix
    return f"Claude API error: {error}"


def _api_message(error: anthropic.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(error.message)


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes = seconds / 60
        return f"{minutes:g} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tail(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
