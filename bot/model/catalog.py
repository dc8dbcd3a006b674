"""The configured model as the API describes it: its context window, output limit, lifecycle and
capabilities (`models.retrieve`), and the list prices of the models threadbox knows.

Asked once at start-up (and by `python -m bot check`): a retired model, or one without the code
execution tool, stops start-up with one line; a deprecated one is warned about.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import anthropic
from anthropic.types import ModelInfo

from ..errors import StartupError
from ..policy.usage import Prices

logger = logging.getLogger(__name__)

# When the API does not say (an older API version, a proxy): the common window and a safe limit.
FALLBACK_CONTEXT_WINDOW = 200_000
FALLBACK_MAX_TOKENS = 32_000
# US dollars per million tokens, as listed (cache writes: the 5-minute ones).
KNOWN_PRICES: dict[str, Prices] = {
    "claude-sonnet-5-5": Prices(input=2.00, cache_write=2.50, cache_read=0.20, output=10.00),
    "claude-opus-5-5": Prices(input=4.00, cache_write=5.00, cache_read=0.40, output=20.00),
    "claude-haiku-5-5": Prices(input=0.10, cache_write=0.125, cache_read=0.01, output=0.50),
    "claude-fable-5-2": Prices(input=8.00, cache_write=10.00, cache_read=0.80, output=40.00),
}
DEFAULT_MODEL = "claude-sonnet-5-5"


class ModelUnusable(StartupError):
    """The configured model cannot run threadbox's turns; the message says what to do."""

    def __init__(self, model: str, problem: str) -> None:
        self.problem = f"{model} {problem}"
        super().__init__(f"ANTHROPIC_MODEL {self.problem}: set it to a current model, e.g. {DEFAULT_MODEL}")


@dataclass(frozen=True)
class ModelLimits:
    """What the configured model allows, as its turns use it."""

    model: str
    display_name: str
    context_window: int
    max_tokens: int
    lifecycle: str
    retires_at: str | None = None

    @property
    def warning(self) -> str | None:
        """Words for the operator about a model headed for retirement."""
        if self.lifecycle != "deprecated":
            return None
        when = f" on {self.retires_at}" if self.retires_at else ""
        return f"{self.model} is deprecated and will be retired{when}: move ANTHROPIC_MODEL to a current model"


class ModelCatalog:
    """The limits of every model a channel may name, asked of the API once each: the
    configured model's as the settings leave them, another's as the API gives them (under
    `ANTHROPIC_MAX_TOKENS` when that is set)."""

    def __init__(
        self, client: anthropic.AsyncAnthropic, configured: ModelLimits, max_tokens: int | None = None
    ) -> None:
        self._client = client
        self._max_tokens = max_tokens
        self._known: dict[str, ModelLimits] = {configured.model: configured}

    @property
    def configured(self) -> ModelLimits:
        return next(iter(self._known.values()))

    async def limits(self, model: str) -> ModelLimits:
        """`ModelUnusable` when the model cannot run turns (unknown, retired, no code tool)."""
        if model not in self._known:
            limits = await model_limits(self._client, model)
            if self._max_tokens:
                limits = replace(limits, max_tokens=min(limits.max_tokens, self._max_tokens))
            self._known[model] = limits
        return self._known[model]

    async def problem(self, model: str) -> str | None:
        """Why `model` cannot run turns, or None when it can."""
        try:
            await self.limits(model)
        except ModelUnusable as unusable:
            return unusable.problem
        return None


def prices_for(model: str) -> Prices:
    """The model's list prices; another model's are estimated at the default model's."""
    return KNOWN_PRICES.get(model, KNOWN_PRICES[DEFAULT_MODEL])


async def model_limits(client: anthropic.AsyncAnthropic, model: str) -> ModelLimits:
    """The model's limits from `GET /v1/models/{id}`; `ModelUnusable` when it cannot run turns."""
    try:
        info = await client.models.retrieve(model)
    except anthropic.NotFoundError:
        raise ModelUnusable(repr(model), "is not a model this API key can use") from None
    return limits_of(info)


def limits_of(info: ModelInfo) -> ModelLimits:
    """`ModelUnusable` for a retired model or one without the code execution tool."""
    retires = info.retires_at.date().isoformat() if info.retires_at else None
    if info.lifecycle == "retired":
        raise ModelUnusable(info.id, f"was retired{f' on {retires}' if retires else ''}")
    capabilities = info.capabilities
    if capabilities is not None and not capabilities.server_tools.code_execution.supported:
        raise ModelUnusable(info.id, "has no code execution tool, which every threadbox turn uses")
    return ModelLimits(
        model=info.id,
        display_name=info.display_name,
        context_window=info.max_input_tokens or FALLBACK_CONTEXT_WINDOW,
        max_tokens=info.max_tokens or FALLBACK_MAX_TOKENS,
        lifecycle=info.lifecycle,
        retires_at=retires,
    )
