"""A turn held to the daily budgets while it runs, not only when it starts: each request's input
is reserved before it goes out (so turns starting meanwhile count it), and a turn whose
continuations would pass a budget ends there, with words."""

from __future__ import annotations

from storage import Store, Usage

from ..ops.logs import audit
from ..policy.budgets import Budget, Budgets
from .context import TurnContext


class TurnSpending:
    """One turn's `SpendGuard`."""

    def __init__(self, store: Store, budgets: Budgets, turn: TurnContext) -> None:
        self.store = store
        self.budgets = budgets
        self.turn = turn

    async def reserve(self, input_tokens: int) -> None:
        item = self.turn.item
        await self.store.reserve(item.id, item.thread.team_id, item.user_id, input_tokens)

    async def may_continue(self, used: Usage) -> str | None:
        item = self.turn.item
        stop = await self.budgets.stop_for(
            item.thread.team_id, item.user_id, item_id=item.id, running=used, channel=channel_budget(self.turn)
        )
        if stop is None:
            return None
        audit("budget_stop", item.thread, scope=stop.scope, user=item.user_id, during="turn")
        return stop.note_during_turn

    async def release(self) -> None:
        """The turn is over: what it used is booked as its usage."""
        await self.store.release_reservation(self.turn.item.id)


def channel_budget(turn: TurnContext) -> tuple[str, Budget] | None:
    """The turn's channel and its own daily budget per person, where it has one."""
    budget = turn.settings.daily_budget
    return None if budget is None else (turn.thread.channel_id, budget)


def spending(store: Store, budgets: Budgets, turn: TurnContext) -> TurnSpending | None:
    """The turn's guard, or None where no budget applies (none set, or an admin's turn)."""
    if turn.workspace.access.is_admin(turn.item.user_id):
        return None
    if not budgets.any(turn.thread.team_id, turn.settings.daily_budget):
        return None
    return TurnSpending(store, budgets, turn)
