"""One turn of Claude with the code execution tool: stream, continue `pause_turn`, keep the container."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import anthropic
from anthropic.types import ContentBlock, Message

# Claude may pause a long turn; this bounds how often we continue one turn.
MAX_CONTINUATIONS = 20
# A container this close to its expiry is not worth reusing.
CONTAINER_EXPIRY_MARGIN_SECONDS = 60

DEFAULT_SYSTEM_PROMPT = (
    "You are threadbox, a helpful assistant in a Slack thread. You can run code in a sandboxed"
    " container that persists for the whole thread: files you write stay there for later"
    " messages. Files you create in the container are uploaded to the thread for the user."
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
    usage: dict[str, int] = field(default_factory=dict)
    """Token counts summed over the turn's model calls, by `usage` field name."""


class ClaudeTurns:
    """Runs turns against the Messages API; the SDK handles retries and `ANTHROPIC_BASE_URL`."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        *,
        model: str,
        tool_version: str,
        max_tokens: int,
        system_prompt: str | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.tool_version = tool_version
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT

    async def run(
        self,
        history: list[dict[str, Any]],
        user_content: list[dict[str, Any]],
        container_id: str | None,
        container_expires_at: float | None,
        observer: TurnObserver,
    ) -> TurnResult:
        """Answer one user message. Never raises for API failures: they land in `result.error`."""
        result = TurnResult()
        if container_id and not _container_usable(container_expires_at):
            container_id, result.container_replaced = None, True
        base = [*history, {"role": "user", "content": user_content}]
        for _ in range(MAX_CONTINUATIONS):
            messages = base
            if result.assistant_content:
                messages = [*base, {"role": "assistant", "content": result.assistant_content}]
            try:
                message = await self._stream_once(messages, container_id, observer)
            except anthropic.APIStatusError as error:
                if container_id and _is_container_error(error) and not result.assistant_content:
                    container_id, result.container_replaced = None, True
                    continue
                result.error = describe_api_error(error)
                return result
            except anthropic.APIError as error:
                result.error = describe_api_error(error)
                return result
            self._absorb(message, result)
            container_id = result.container_id
            if message.stop_reason != "pause_turn":
                return result
        result.error = "Claude kept pausing this turn; stopped after too many continuations."
        return result

    async def _stream_once(
        self, messages: list[dict[str, Any]], container_id: str | None, observer: TurnObserver
    ) -> Message:
        tools: Any = [{"type": self.tool_version, "name": "code_execution"}]
        async with self.client.messages.stream(
            model=self.model,
            max_tokens=self.max_tokens,
            system=self.system_prompt,
            messages=messages,  # type: ignore[arg-type]
            tools=tools,
            container=container_id or anthropic.omit,
        ) as stream:
            async for event in stream:
                if event.type == "text":
                    await observer.on_text(event.text)
                elif event.type == "content_block_stop":
                    await _report_block(event.content_block, observer)
            return await stream.get_final_message()

    @staticmethod
    def _absorb(message: Message, result: TurnResult) -> None:
        result.stop_reason = message.stop_reason
        for name, count in message.usage.model_dump(exclude_none=True).items():
            if isinstance(count, int):
                result.usage[name] = result.usage.get(name, 0) + count
        for block in message.content:
            dumped = block.model_dump(mode="json", exclude_none=True)
            result.assistant_content.append(dumped)
            if block.type == "text":
                result.text += block.text
            result.output_file_ids.extend(_output_file_ids(dumped))
        if message.container is not None:
            result.container_id = message.container.id
            result.container_expires_at = message.container.expires_at.timestamp()


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


def _output_file_ids(block: dict[str, Any]) -> list[str]:
    """File ids the code produced, from a tool result's `*_output` entries."""
    content = block.get("content")
    if not block["type"].endswith("_tool_result") or not isinstance(content, dict):
        return []
    outputs = content.get("content") or []
    return [item["file_id"] for item in outputs if isinstance(item, dict) and item.get("file_id")]


def _container_usable(expires_at: float | None) -> bool:
    return expires_at is None or expires_at > time.time() + CONTAINER_EXPIRY_MARGIN_SECONDS


def _is_container_error(error: anthropic.APIStatusError) -> bool:
    return error.status_code in (400, 404) and "container" in str(error.message).lower()


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


def _one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tail(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
