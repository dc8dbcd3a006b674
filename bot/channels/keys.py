"""The keys a channel (or a workspace, or the file's defaults) may set, and their values.

One reader for every source: the settings file's tables and the Slack modal's answers are read
by `read_keys`, which names each problem (the key, the bad value) and keeps the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, cast, get_args

from ..policy.budgets import Budget, parse_budget

Effort = Literal["low", "medium", "high", "max"]
EFFORTS: tuple[str, ...] = get_args(Effort)
FollowUps = Literal["all", "mention"]
FOLLOW_UP_CHOICES: tuple[str, ...] = get_args(FollowUps)
MAX_INSTRUCTIONS_CHARS = 3000
DM_ENTRY = "dm"
"""The channel id the DMs' entry is kept under (no Slack channel id is this short)."""


@dataclass(frozen=True)
class Keys:
    """What one layer sets; None: not set here, so the layer below decides."""

    instructions: str | None = None
    model: str | None = None
    effort: str | None = None
    skills: tuple[str, ...] | None = None
    web_fetch: bool | None = None
    web_search: bool | None = None
    follow_ups: str | None = None
    daily_budget: Budget | None = None
    """Per person and UTC day, in this channel."""

    def set_here(self) -> dict[str, Any]:
        """The keys this layer sets, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def over(self, below: Keys) -> Keys:
        """This layer, with what it leaves unset taken from `below`."""
        return replace(below, **self.set_here())

    def to_json(self) -> dict[str, Any]:
        """The keys as the settings file writes them (and the store keeps them)."""
        out: dict[str, Any] = {}
        for name, value in self.set_here().items():
            if isinstance(value, Budget):
                value = budget_text(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


KEY_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Keys))


def budget_text(budget: Budget) -> str:
    """A budget as it is written: `$5` or `500000`."""
    return f"${budget.amount:g}" if budget.in_dollars else str(int(budget.amount))


def read_keys(
    table: Mapping[str, Any], *, skills: Collection[str], models: Collection[str] | None = None
) -> tuple[Keys, list[tuple[str, str]]]:
    """The keys of one table, and its problems as (key, what is wrong). `skills`: the skill
    names this process can give; `models`: the models known to exist, when already asked."""
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, raw in table.items():
        if key not in KEY_NAMES:
            problems.append((key, f"unknown key (known: {', '.join(KEY_NAMES)})"))
            continue
        try:
            values[key] = _read(key, raw, skills)
        except ValueError as error:
            problems.append((key, str(error)))
    model = values.get("model")
    if models is not None and model is not None and model not in models:
        problems.append(("model", f"unknown model {model!r}"))
        del values["model"]
    return Keys(**values), problems


def _read(key: str, raw: Any, skills: Collection[str]) -> Any:
    if key in ("web_fetch", "web_search"):
        if not isinstance(raw, bool):
            raise ValueError(f"must be true or false, got {raw!r}")
        return raw
    if key == "skills":
        if not isinstance(raw, list | tuple) or not all(isinstance(name, str) for name in raw):
            raise ValueError(f"must be a list of skill names, got {raw!r}")
        unknown = [name for name in raw if name not in skills]
        if unknown:
            raise ValueError(f"unknown skill(s) {', '.join(unknown)} (known: {', '.join(sorted(skills)) or 'none'})")
        return tuple(dict.fromkeys(raw))
    if key == "daily_budget":
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"must be tokens (500000) or dollars (\"$5\"), got {raw!r}")
        try:
            budget = parse_budget(str(raw))
        except ValueError:
            raise ValueError(f"must be tokens (500000) or dollars (\"$5\"), got {raw!r}") from None
        if budget is None:
            raise ValueError("must be more than 0 (leave it out for no budget of its own)")
        return budget
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"must be a non-empty string, got {raw!r}")
    text = raw.strip()
    if key == "instructions":
        if len(text) > MAX_INSTRUCTIONS_CHARS:
            raise ValueError(f"is {len(text):,} characters long; at most {MAX_INSTRUCTIONS_CHARS:,}")
        return text
    if key == "effort" and text not in EFFORTS:
        raise ValueError(f"must be one of {', '.join(EFFORTS)}, got {raw!r}")
    if key == "follow_ups" and text not in FOLLOW_UP_CHOICES:
        raise ValueError(f"must be one of {', '.join(FOLLOW_UP_CHOICES)}, got {raw!r}")
    return cast(Any, text)
