"""Spending limits: daily budgets per person and per workspace, in tokens or estimated dollars.

A day is a UTC day. Admins are exempt. The records are the usage stored for every turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from storage import Store, Usage

from .usage import Prices, dollars, tokens

DAY_SECONDS = 86400


@dataclass(frozen=True)
class Budget:
    """A daily limit: `amount` tokens, or (`in_dollars`) estimated US dollars."""

    amount: float
    in_dollars: bool = False

    def spent(self, usage: Usage, prices: Prices) -> float:
        return prices.cost(usage) if self.in_dollars else float(usage.total_tokens)

    def describe(self) -> str:
        return dollars(self.amount) if self.in_dollars else f"{tokens(int(self.amount))} tokens"


def parse_budget(text: str) -> Budget | None:
    """`500000` or `500000 tokens` (tokens), `$5` or `5 usd` (dollars); empty or 0: no limit."""
    value = text.strip().lower().replace(",", "").replace("_", "")
    if not value:
        return None
    in_dollars = value.startswith("$") or value.endswith("usd")
    number = value.strip("$").removesuffix("usd").removesuffix("tokens").strip()
    amount = float(number)  # ValueError names the bad setting in config
    if amount < 0:
        raise ValueError("a budget cannot be negative")
    return Budget(amount, in_dollars) if amount > 0 else None


@dataclass(frozen=True)
class DailyBudgets:
    """One workspace's daily budgets (None: none)."""

    per_person: Budget | None = None
    per_workspace: Budget | None = None


@dataclass(frozen=True)
class BudgetStop:
    """Why a turn may not start, for the person who asked."""

    scope: str  # "person", "channel" (a person's budget in one channel) or "workspace"
    budget: Budget
    resets_at: float

    @property
    def note(self) -> str:
        budget, whose = self.budget.describe(), self._whose
        return f":money_with_wings: {whose} daily threadbox budget{self._where} ({budget}) is used up. {self._reset}"

    @property
    def note_during_turn(self) -> str:
        """Why a running turn ended before its next step."""
        return (
            f":money_with_wings: I stopped here: going on would pass {self._whose.lower()} daily threadbox budget"
            f"{self._where} ({self.budget.describe()}). What was done so far stays. {self._reset}"
        )

    @property
    def _whose(self) -> str:
        return "This workspace's" if self.scope == "workspace" else "Your"

    @property
    def _where(self) -> str:
        return " in this channel" if self.scope == "channel" else ""

    @property
    def _reset(self) -> str:
        when = time.strftime("%H:%M UTC", time.gmtime(self.resets_at))
        return f"It resets at {when} (in {_hours_minutes(self.resets_at - time.time())})."


class Budgets:
    """Checks a person's and their workspace's spending today against the daily budgets."""

    def __init__(self, store: Store, prices: Prices, limits: Callable[[str], DailyBudgets]) -> None:
        """`limits`: a workspace's daily budgets, as its policy sets them now."""
        self.store = store
        self.prices = prices
        self.limits = limits

    async def stop_for(
        self, team_id: str, user_id: str, *, item_id: int | None = None, running: Usage | None = None,
        channel: tuple[str, Budget] | None = None,
    ) -> BudgetStop | None:
        """None when the person may start (or, with `running`, go on with) a turn now.

        Counted: today's booked usage, what the other running turns have reserved (their next
        request's input, booked before it goes out), and `running`, what turn `item_id` has
        used so far. `channel`: the turn's channel and its own budget per person, if it has one
        (what the person's other turns reserved counts against it too)."""
        day_start = start_of_utc_day(time.time())
        resets_at = day_start + DAY_SECONDS
        so_far = running or Usage()
        checks: list[tuple[Budget, str | None, str]] = [] if channel is None else [(channel[1], channel[0], "channel")]
        limits = self.limits(team_id)
        if limits.per_person is not None:
            checks.append((limits.per_person, None, "person"))
        reserved = Usage()
        if checks:  # what the person's other running turns reserved counts against both
            reserved = Usage(input_tokens=await self.store.reserved_input(team_id, user_id, excluding=item_id))
        for budget, channel_id, scope in checks:
            mine = await self.store.user_usage(team_id, user_id, since=day_start, channel_id=channel_id)
            if budget.spent(mine + so_far + reserved, self.prices) >= budget.amount:
                return BudgetStop(scope, budget, resets_at)
        if limits.per_workspace is not None:
            ours = await self.store.team_usage(team_id, since=day_start)
            reserved = Usage(input_tokens=await self.store.reserved_input(team_id, excluding=item_id))
            if limits.per_workspace.spent(ours + so_far + reserved, self.prices) >= limits.per_workspace.amount:
                return BudgetStop("workspace", limits.per_workspace, resets_at)
        return None

    def any(self, team_id: str, channel_budget: Budget | None = None) -> bool:
        """Whether any budget applies in the workspace (a channel's own included)."""
        limits = self.limits(team_id)
        return limits.per_person is not None or limits.per_workspace is not None or channel_budget is not None


def start_of_utc_day(now: float) -> float:
    return now - now % DAY_SECONDS


def _hours_minutes(seconds: float) -> str:
    minutes = max(1, int(seconds // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
