"""One turn of Claude with the code execution tool: stream, continue `pause_turn`, keep the container.

The SDK retries HTTP errors and reads `ANTHROPIC_BASE_URL`; this module decides what an error
means for the turn (a gone container, a lost file, a request too long) and never raises one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import anthropic
from anthropic import Omit
from anthropic.types import ContainerParams, ContentBlock, ContentBlockParam, Message, MessageParam, SkillParams

from storage import Usage

from ..tasks import run_until
from .errors import api_message, container_is_gone, describe_api_error, is_transient
from .request import EPHEMERAL, ModelSettings
from .tools import CODE_TOOL_NAMES, tool_outcome, tool_sources, tool_title
from .transcript import (
    as_param,
    continuation,
    missing_file_ids,
    output_file_ids,
    paired,
    with_cache_anchor,
    without_files,
)
from .window import ContextWindow, too_long

# Claude may pause a long turn; this bounds how often we continue one turn.
MAX_CONTINUATIONS = 20
# An error inside a stream that began with HTTP 200 is retried as the SDK retries HTTP errors.
MAX_STREAM_RETRIES = 2
STREAM_RETRY_SECONDS = 0.5
# A container whose `expires_at` passed this long ago has been idle for a long time; one
# that then keeps failing with server errors is given up for a fresh one.
LONG_IDLE_SECONDS = 3600


class TurnObserver(Protocol):
    """Receives progress while a turn runs (the Slack reply renders it)."""

    async def on_text(self, delta: str) -> None: ...

    async def on_thinking(self, delta: str) -> None:
        """Words the model writes for itself (on current models, also those between tool calls)."""

    async def on_tool_start(self, tool_id: str, title: str, kind: str = "code") -> None:
        """A tool call begins: a code run (`code`) or a web tool's use (`web`)."""

    async def on_tool_end(
        self, tool_id: str, ok: bool, excerpt: str, sources: Sequence[tuple[str, str]] = ()
    ) -> None:
        """A tool's result: whether it worked, an excerpt, and the pages it read (url, title)."""


class SpendGuard(Protocol):
    """Holds a turn to the budgets: books each request's input before it goes out, and may end
    a turn whose continuations would pass a budget."""

    async def reserve(self, input_tokens: int) -> None: ...

    async def may_continue(self, used: Usage) -> str | None:
        """None to go on after a turn has used `used`; else the words that end it there."""


@dataclass
class TurnResult:
    """What a finished (or failed) turn leaves behind."""

    assistant_content: list[ContentBlockParam] = field(default_factory=list)
    text: str = ""
    stop_reason: str | None = None
    container_id: str | None = None
    container_expires_at: float | None = None
    container_replaced: bool = False
    output_file_ids: list[str] = field(default_factory=list)
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    window_trimmed: bool = False
    """Older output was left out of the request for the first time at this size."""
    stopped: bool = False
    """Someone asked to stop the turn (`!stop`, the Stop button) before it ended."""
    earlier_history: list[MessageParam] | None = None
    """The thread's history as this turn sent it, when it had to leave out files the Files API
    no longer has: stored in its place, so later turns do not hit the same refusal."""
    budget_stop: str | None = None
    """The turn was ended before a continuation because a budget would be passed: why."""
    refusal: str | None = None
    """Claude refused (`stop_reason: "refusal"`): its explanation for the person, if it gave one,
    else "". The refused exchange is not kept: replayed, it would be refused again."""


class InterruptedAnswer(Exception):
    """A stream that began well ended in an error event: the blocks it had finished, and whether
    words of an unfinished one were already shown."""

    def __init__(self, error: anthropic.APIStatusError, finished: list[ContentBlockParam], shown: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.finished = finished
        self.shown = shown


class ClaudeTurns:
    """Runs turns against the Messages API, each with the settings its channel gives it."""

    def __init__(self, client: anthropic.AsyncAnthropic, *, context_window: int, deadline_seconds: float) -> None:
        self.client = client
        self.deadline_seconds = deadline_seconds
        self.context_window = context_window
        # One per distinct request settings: what each learned of the API's counting is kept.
        self._windows: dict[str, ContextWindow] = {}

    def window(self, settings: ModelSettings) -> ContextWindow:
        key = json.dumps([settings.model, settings.system(), settings.tools(), settings.skills])
        if key not in self._windows:
            self._windows[key] = ContextWindow(settings.context_window or self.context_window, overhead_chars=len(key))
        return self._windows[key]

    async def run(
        self,
        settings: ModelSettings,
        history: list[MessageParam],
        user_content: list[ContentBlockParam],
        container_id: str | None,
        container_expires_at: float | None,
        observer: TurnObserver,
        stop: asyncio.Event,
        spend: SpendGuard | None = None,
    ) -> TurnResult:
        """Answer one user message. Never raises for API failures: they land in `result.error`.
        Setting `stop` ends the turn early; what it did until then stays in the result.

        The stored container is always sent: past its `expires_at` the API restores it. It is
        replaced only when the API says it is gone, or (once) when a long-idle one keeps
        failing with a server error.
        """
        result = TurnResult(container_id=container_id, container_expires_at=container_expires_at)
        messages: list[MessageParam] = [*history, {"role": "user", "content": user_content}]
        try:
            async with asyncio.timeout(self.deadline_seconds):
                work = self._run_until_done(settings, messages, result, observer, spend)
                result.stopped = await run_until(stop, work)
        except TimeoutError:
            result.error = (
                f"This turn ran longer than {_duration(self.deadline_seconds)}, so I stopped it."
                " What was done so far stays; ask again to continue."
            )
        return result

    async def _run_until_done(
        self, settings: ModelSettings, base: list[MessageParam], result: TurnResult, observer: TurnObserver,
        spend: SpendGuard | None,
    ) -> None:
        window = self.window(settings)
        idle_retry = _long_idle(result.container_expires_at)
        plan = window.fit(base)
        # The thread hears once, when trimming starts (base[:-2] is what the last turn sent).
        result.window_trimmed = plan.trimmed and not (len(base) > 1 and window.fit(base[:-2]).trimmed)
        shed_more = True
        continuations = retries = 0
        while continuations < MAX_CONTINUATIONS:
            messages = plan.messages
            if result.assistant_content:
                messages = [*plan.messages, {"role": "assistant", "content": result.assistant_content}]
            if spend is not None:
                if result.usage.prompt_tokens and (note := await spend.may_continue(result.usage)):
                    result.budget_stop = note
                    return
                await spend.reserve(int(window.estimate(messages)))
            try:
                message = await self._stream_once(settings, messages, result, observer)
            except InterruptedAnswer as cut:
                done, after = continuation(cut.finished)
                words_lost = cut.shown or any(block["type"] == "text" for block in after)
                if retries < MAX_STREAM_RETRIES and is_transient(cut.error) and not words_lost:
                    self._keep(result, done)  # asked again from the last finished run, as after a pause
                    retries += 1
                    await asyncio.sleep(STREAM_RETRY_SECONDS * retries)
                    continue
                self._keep(result, cut.finished)
                result.error = describe_api_error(cut.error)
                return
            except anthropic.APIStatusError as error:
                fresh_start = not result.assistant_content
                if result.container_id and fresh_start and container_is_gone(error, result.container_id):
                    self._forget_container(result)
                    continue
                if result.container_id and fresh_start and idle_retry and error.status_code >= 500:
                    idle_retry = False
                    self._forget_container(result)
                    continue
                missing = missing_file_ids(api_message(error), messages) if error.status_code in (400, 404) else set()
                if missing:
                    base = without_files(base, missing)
                    result.earlier_history = base[:-1]
                    plan = window.fit(base)
                    continue
                counted = too_long(api_message(error)) if error.status_code == 400 else None
                if counted is not None and shed_more:
                    # The estimate was low: correct it to what the API counted, keep only this turn.
                    shed_more = False
                    window.learn(messages, *counted)
                    refit = window.fit(base, keep_turns=1)
                    result.window_trimmed = refit.trimmed and not plan.trimmed
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

    async def _stream_once(
        self, settings: ModelSettings, messages: list[MessageParam], result: TurnResult, observer: TurnObserver
    ) -> Message:
        """One streamed request. Cut short (a stop, the deadline), what it used so far is still
        booked: its input, the bulk of a long thread's cost, is known from its first event."""
        async with self.client.messages.stream(
            model=settings.model,
            max_tokens=settings.max_tokens,
            system=settings.system(),
            messages=with_cache_anchor(messages),
            tools=settings.tools(),
            container=container_param(result.container_id, settings.skills),
            cache_control=EPHEMERAL,
            output_config=settings.output_config(),
        ) as stream:
            started, finished, shown = False, 0, False
            try:
                async for event in stream:
                    started = True
                    if event.type == "text":
                        shown = True
                        await observer.on_text(event.text)
                    elif event.type == "thinking":
                        await observer.on_thinking(event.thinking)
                    elif event.type == "content_block_stop":
                        finished, shown = finished + 1, False
                        await _report_block(event.content_block, observer)
            except anthropic.APIStatusError as error:  # an error event inside the stream
                snapshot = stream.current_message_snapshot
                result.usage = result.usage + message_usage(snapshot)
                kept = [as_param(block) for block in snapshot.content[:finished]]
                if shown and finished < len(snapshot.content) and snapshot.content[finished].type == "text":
                    kept.append(as_param(snapshot.content[finished]))  # the words people already read
                raise InterruptedAnswer(error, kept, shown) from error
            except asyncio.CancelledError:
                if started:
                    result.usage = result.usage + message_usage(stream.current_message_snapshot)
                raise
            return await stream.get_final_message()

    @staticmethod
    def _keep(result: TurnResult, blocks: list[ContentBlockParam]) -> None:
        """Add an answer's blocks to the turn, never a server tool call without its result (an
        answer cut at `max_tokens` or by an error can end between them)."""
        for block in paired(blocks):
            result.assistant_content.append(block)
            if block["type"] == "text":
                result.text += block["text"]
            result.output_file_ids.extend(output_file_ids(cast(dict[str, Any], block)))

    @classmethod
    def _absorb(cls, message: Message, result: TurnResult) -> None:
        result.stop_reason = message.stop_reason
        result.usage = result.usage + message_usage(message)
        if message.stop_reason == "refusal":
            details = message.stop_details
            result.refusal = (details.explanation if details is not None else None) or ""
        cls._keep(result, [as_param(block) for block in message.content])
        if message.container is not None:
            result.container_id = message.container.id
            result.container_expires_at = message.container.expires_at.timestamp()


def message_usage(message: Message) -> Usage:
    """What one response used, as the API reports it (while streaming: as reported so far)."""
    server = message.usage.server_tool_use
    return Usage(
        input_tokens=message.usage.input_tokens,
        cache_creation_input_tokens=message.usage.cache_creation_input_tokens or 0,
        cache_read_input_tokens=message.usage.cache_read_input_tokens or 0,
        output_tokens=message.usage.output_tokens,
        code_runs=sum(block.type == "server_tool_use" and block.name in CODE_TOOL_NAMES for block in message.content),
        web_searches=server.web_search_requests if server is not None else 0,
        web_fetches=server.web_fetch_requests if server is not None else 0,
    )


def container_param(container_id: str | None, skills: Sequence[SkillParams]) -> ContainerParams | str | Omit:
    """The request's `container`: the thread's, with its skills (the same list every turn)."""
    if skills:
        return {"id": container_id, "skills": list(skills)} if container_id else {"skills": list(skills)}
    return container_id or anthropic.omit


async def _report_block(block: ContentBlock, observer: TurnObserver) -> None:
    if block.type == "server_tool_use":
        kind = "code" if block.name in CODE_TOOL_NAMES else "web"
        await observer.on_tool_start(block.id, tool_title(block.name, block.input), kind)
    elif block.type.endswith("_tool_result") and hasattr(block, "tool_use_id"):
        dumped = block.model_dump(mode="json", exclude_none=True)
        ok, excerpt = tool_outcome(dumped)
        await observer.on_tool_end(block.tool_use_id, ok, excerpt, tool_sources(dumped))


def _long_idle(expires_at: float | None) -> bool:
    return expires_at is not None and time.time() - expires_at > LONG_IDLE_SECONDS


def _duration(seconds: float) -> str:
    if seconds >= 60:
        minutes = seconds / 60
        return f"{minutes:g} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"
