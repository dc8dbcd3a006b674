"""Prometheus metrics: one registry per runtime, passed to what records into it (no global).

Served as `GET /metrics` in the Prometheus text format (see README.md for example queries).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anthropic
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from ..model.tools import tool_outcome
from ..model.turns import TurnObserver, TurnResult

if TYPE_CHECKING:
    import httpx2  # the anthropic SDK's HTTP client library

TURN_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
FIRST_WORD_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60)
QUEUE_WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
# `usage` fields of a Messages API answer, by the name the metric gives their kind.
TOKEN_KINDS = {
    "input": "input_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_write": "cache_creation_input_tokens",
    "output": "output_tokens",
}
STOP_REASON_OUTCOMES = {
    "max_tokens": "max_tokens",
    "refusal": "refusal",
    "model_context_window_exceeded": "context_full",
}


class Metrics:
    """Every metric threadbox exports, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = self.registry
        self.turns = Counter(
            "threadbox_turns", "Turns by outcome: answered, error, max_tokens, refusal, context_full,"
            " too_long, no_input, crashed, stopped, budget.", ["outcome"], registry=r,
        )
        self.turn_seconds = Histogram(
            "threadbox_turn_duration_seconds", "From a turn's start to its finished reply.",
            buckets=TURN_BUCKETS, registry=r,
        )
        self.first_word_seconds = Histogram(
            "threadbox_time_to_first_word_seconds", "From a turn's start to the first word of the answer in Slack.",
            buckets=FIRST_WORD_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "threadbox_queue_depth", "Messages and resets waiting for their turn (all processes).", registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "threadbox_queue_wait_seconds", "From a message being posted in Slack to its turn starting.",
            buckets=QUEUE_WAIT_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "threadbox_tokens", "Model tokens by kind: input, cache_read, cache_write, output.", ["kind"], registry=r,
        )
        self.code_runs = Counter(
            "threadbox_code_runs", "Code runs (bash and file edits) in containers, by result: ok, error.",
            ["result"], registry=r,
        )
        self.files = Counter(
            "threadbox_files_relayed", "Files relayed, by direction: to_container, to_slack.", ["direction"],
            registry=r,
        )
        self.file_bytes = Counter(
            "threadbox_file_bytes_relayed", "Bytes of relayed files, by direction.", ["direction"], registry=r,
        )
        self.slack_errors = Counter(
            "threadbox_slack_api_errors", "Slack Web API errors (retried ones included), by method and error code"
            " (`ratelimited` for a 429, `http_5xx` for a server error).", ["method", "error"], registry=r,
        )
        self.anthropic_errors = Counter(
            "threadbox_anthropic_api_errors", "Anthropic API error answers (retried ones included), by HTTP status"
            " and error type.", ["status", "type"], registry=r,
        )
        self.slack_paced = Counter(
            "threadbox_slack_paced_seconds", "Seconds Slack calls waited for their workspace's rate budget, by method.",
            ["method"], registry=r,
        )
        self.feedback = Counter(
            "threadbox_feedback", "Presses of the feedback buttons under answers, by rating (good, bad).",
            ["rating"], registry=r,
        )
        self.containers_replaced = Counter(
            "threadbox_containers_replaced", "Turns that had to start a new container for their thread.", registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        """The body and content type of a `GET /metrics` answer."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- recording -----------------------------------------------------------------------

    def turn_started(self, message_ts: str | None) -> float:
        """Record how long the message waited since it was posted; returns the turn's start."""
        now = time.time()
        try:
            posted = float(message_ts or "")
        except ValueError:
            posted = now
        self.queue_wait_seconds.observe(max(0.0, now - posted))
        return time.monotonic()

    def slack_waited(self, method: str, seconds: float) -> None:
        self.slack_paced.labels(method).inc(seconds)

    def feedback_given(self, rating: str) -> None:
        self.feedback.labels(rating).inc()

    def turn_finished(self, outcome: str, started: float) -> None:
        self.turns.labels(outcome).inc()
        self.turn_seconds.observe(time.monotonic() - started)

    def model_turn(self, result: TurnResult) -> str:
        """Record what one model turn used and ran; returns its outcome."""
        for kind, field in TOKEN_KINDS.items():
            self.tokens.labels(kind).inc(getattr(result.usage, field))
        for block in result.assistant_content:
            if str(block.get("type", "")).endswith("_tool_result"):
                ok, _ = tool_outcome(block)
                self.code_runs.labels("ok" if ok else "error").inc()
        if result.container_replaced:
            self.containers_replaced.inc()
        if result.stopped:
            return "stopped"
        if result.error:
            return "error"
        return STOP_REASON_OUTCOMES.get(result.stop_reason or "", "answered")

    def file_relayed(self, direction: str, size: int) -> None:
        self.files.labels(direction).inc()
        self.file_bytes.labels(direction).inc(size)

    def first_word(self, observer: TurnObserver, started: float) -> TurnObserver:
        """`observer`, also timing the first text of the answer."""
        return _FirstWordTimer(observer, started, self.first_word_seconds)

    def slack_error_counter(self) -> AsyncRetryHandler:
        """A slack_sdk retry handler that never retries: it sees every answer and counts the errors."""
        return _SlackErrorCounter(self.slack_errors)

    def anthropic_http_client(self) -> httpx2.AsyncClient:
        """The anthropic SDK's default HTTP client, counting every error answer (retries included)."""
        return anthropic.DefaultAioHttpClient(event_hooks={"response": [self._count_anthropic_error]})

    async def _count_anthropic_error(self, response: httpx2.Response) -> None:
        if response.status_code < 400:
            return
        await response.aread()  # an error answer is a small JSON body; the SDK reads it again
        try:
            error = response.json().get("error") or {}
            kind = str(error.get("type") or "unknown")
        except (ValueError, AttributeError):
            kind = "unknown"
        self.anthropic_errors.labels(str(response.status_code), kind).inc()


class _FirstWordTimer:
    def __init__(self, observer: TurnObserver, started: float, histogram: Histogram) -> None:
        self._observer, self._started, self._histogram = observer, started, histogram
        self._seen = False

    async def on_text(self, delta: str) -> None:
        await self._observer.on_text(delta)
        if not self._seen and delta.strip():
            self._seen = True
            self._histogram.observe(time.monotonic() - self._started)

    async def on_thinking(self, delta: str) -> None:
        await self._observer.on_thinking(delta)

    async def on_tool_start(self, tool_id: str, title: str, kind: str = "code") -> None:
        await self._observer.on_tool_start(tool_id, title, kind)

    async def on_tool_end(
        self, tool_id: str, ok: bool, excerpt: str, sources: Sequence[tuple[str, str]] = ()
    ) -> None:
        await self._observer.on_tool_end(tool_id, ok, excerpt, sources)


class _SlackErrorCounter(AsyncRetryHandler):
    def __init__(self, counter: Counter) -> None:
        super().__init__(max_retry_count=0)
        self._counter = counter

    def __deepcopy__(self, memo: dict[int, Any]) -> _SlackErrorCounter:
        """Bolt deep-copies the client with each request it hands to a lazy listener: the
        copy counts into the same metrics."""
        return self

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        code = _slack_error_code(response, error)
        if code is not None:
            method = request.url.rstrip("/").rsplit("/", 1)[-1]
            self._counter.labels(method, code).inc()
        return False


def _slack_error_code(response: HttpResponse | None, error: Exception | None) -> str | None:
    if error is not None:
        return type(error).__name__
    if response is None:
        return None
    if response.status_code == 429:
        return "ratelimited"
    if response.status_code >= 500:
        return f"http_{response.status_code}"
    body: Any = response.body
    if isinstance(body, dict) and body.get("ok") is False:
        return str(body.get("error") or "unknown")
    return None
