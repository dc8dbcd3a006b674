"""What of a thread's history is sent to the model: all of it while it fits comfortably,
and, past that, the history with older code output left out, in large steps.

The stored history always stays whole; only the request is trimmed. The amount left out
depends only on how big the history is, in steps of a quarter of the context window, so
consecutive turns send the same prefix and the prompt cache keeps hitting; it changes (and
costs one cache write) only when the history has grown by another step.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anthropic.types import MessageParam

# Code output runs 3 to 4 characters a token; JSON escaping adds a little. Overestimating
# is safe: a request that is still too long is recovered from (see `model/turns.py`).
CHARS_PER_TOKEN = 3.0
# Older output starts being left out when the request would pass this part of the window,
TRIGGER_FRACTION = 0.5
# and then in steps of this part of the window at a time.
STEP_FRACTION = 0.25
# Whole older turns go only when, with their output left out, a request would still pass this.
DROP_FRACTION = 0.6
# The latest turns are sent verbatim.
KEEP_TURNS = 2
# Strings up to this long survive in a trimmed tool block (commands, short outputs).
KEPT_CHARS = 300
LEFT_OUT = "[{chars:,} characters left out of this older code run to fit the context window]"
_TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")


@dataclass(frozen=True)
class WindowPlan:
    """The messages to send, and whether anything was left out of them."""

    messages: list[MessageParam]
    trimmed: bool = False


class ContextWindow:
    """Plans requests that fit a model's context window (in tokens)."""

    def __init__(self, tokens: int, *, overhead_chars: int = 0) -> None:
        self.tokens = tokens
        self.overhead_chars = overhead_chars
        self.scale = 1.0
        """Tokens the API counted per estimated token, once it refused a request as too long."""

    def learn(self, sent: Sequence[MessageParam], counted: int, maximum: int) -> None:
        """Correct the estimate and the window from the API's `prompt is too long` answer."""
        self.scale = max(self.scale, counted * self.scale / self.estimate(sent))
        self.tokens = min(self.tokens, maximum)

    def fit(self, messages: Sequence[MessageParam], *, keep_turns: int = KEEP_TURNS) -> WindowPlan:
        """`messages` (ending with the newest user message) as they should be sent."""
        scale, window = self.scale, self.tokens

        def estimate(value: Any) -> float:
            return len(json.dumps(value)) / CHARS_PER_TOKEN * scale

        total = self.estimate(messages)
        trigger, step = window * TRIGGER_FRACTION, window * STEP_FRACTION
        if total <= trigger:
            return WindowPlan(list(messages))
        to_shed = math.ceil((total - trigger) / step) * step
        kept = list(messages)  # changed messages are copied; the caller's stay as they are
        protected = _start_of_last_turns(kept, keep_turns)
        shed, trimmed = 0.0, 0
        for position, message in enumerate(kept[:protected]):
            if shed >= to_shed:
                break
            if message["role"] != "assistant" or not isinstance(message["content"], list):
                continue
            content: list[Any] = list(message["content"])
            for index, block in enumerate(content):
                if shed >= to_shed:
                    break
                smaller = _without_long_output(block)
                if smaller is not None:
                    shed += estimate(block) - estimate(smaller)
                    content[index] = smaller
                    trimmed += 1
            kept[position] = {"role": message["role"], "content": content}
        dropped = 0
        while total - shed > window * DROP_FRACTION and protected > 0:
            turn_end = _start_of_last_turns(kept[:protected], len(_turn_starts(kept[:protected])) - 1)
            if turn_end <= 0:
                break
            shed += estimate(kept[:turn_end])
            del kept[:turn_end]
            protected -= turn_end
            dropped += 1
        return WindowPlan(kept, trimmed=bool(trimmed or dropped))

    def estimate(self, messages: Sequence[MessageParam]) -> float:
        """Estimated tokens of a request with these messages (system prompt and tools included)."""
        return (len(json.dumps(messages)) + self.overhead_chars) / CHARS_PER_TOKEN * self.scale


def too_long(message: str) -> tuple[int, int] | None:
    """(N, M) from the API's `prompt is too long: N tokens > M maximum`, if that is the error."""
    match = _TOO_LONG.search(message)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _turn_starts(messages: Sequence[MessageParam]) -> list[int]:
    """Indexes of the user messages (each starts a turn)."""
    return [i for i, message in enumerate(messages) if message["role"] == "user"]


def _start_of_last_turns(messages: Sequence[MessageParam], turns: int) -> int:
    starts = _turn_starts(messages)
    if turns <= 0:
        return len(messages)
    return starts[-turns] if len(starts) >= turns else 0


def _without_long_output(block: dict[str, Any]) -> dict[str, Any] | None:
    """A tool block with its long strings replaced by a short marker; None if nothing is long."""
    kind = str(block.get("type", ""))
    if kind != "server_tool_use" and not kind.endswith("_tool_result"):
        return None
    changed = False

    def shrink(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, str) and len(value) > KEPT_CHARS:
            changed = True
            return LEFT_OUT.format(chars=len(value))
        if isinstance(value, dict):
            return {key: shrink(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shrink(item) for item in value]
        return value

    smaller = shrink(block)
    return smaller if changed else None
