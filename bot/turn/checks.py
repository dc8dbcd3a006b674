"""The checks that may end a turn before the model is asked, each with words for the person.

Each check returns True when it ended the turn (having said why), False to go on. They run in
a fixed order: access, attempts, then (after the in-thread commands) budget and length.
"""

from __future__ import annotations

import logging
import time

from storage import ThreadKey

from ..ops.logs import audit
from ..ops.metrics import Metrics
from ..outbound.notices import tell_privately
from ..policy.budgets import Budgets
from ..schedules.commands import run_skipped
from .context import TurnContext
from .prompt import request_text
from .spending import channel_budget

logger = logging.getLogger(__name__)

# A refused person is told so at most this often per thread.
REFUSAL_NOTE_INTERVAL_SECONDS = 3600.0
# A message whose turn was cut short this often (each time by a dying process) is not tried again.
MAX_ATTEMPTS = 3
GAVE_UP_NOTE = (
    ":warning: I started on this message {attempts} times and was interrupted every time, so I've"
    " stopped trying. Please send it again, perhaps asking for less at once."
)
TOO_LONG_NOTE = (
    "That message is {length:,} characters long; the limit is {limit:,}. Please attach long text as a file instead."
)


class TurnChecks:
    """Access, attempts, budget and length: the ways a turn ends with words and no model call."""

    def __init__(self, budgets: Budgets, metrics: Metrics, *, max_message_chars: int) -> None:
        self.budgets = budgets
        self.metrics = metrics
        self.max_message_chars = max_message_chars
        # (user, thread) -> when they were last told they may not use the bot there.
        self._refusals_told: dict[tuple[str, ThreadKey], float] = {}

    async def access(self, turn: TurnContext) -> bool:
        """A refused person's message goes nowhere; they read why, once in a while."""
        message = turn.message
        decision = await turn.workspace.access.check(message.user_id, message.thread.channel_id)
        if decision.allowed:
            return False
        audit("refused", message.thread, reason=decision.reason, user=message.user_id)
        await run_skipped(self.budgets.store, turn, "may no longer use threadbox here")
        if self._told_recently(message.user_id, message.thread):
            return True
        await tell_privately(
            turn.workspace.client, message.thread.channel_id, message.user_id, turn.target.thread_ts, decision.note
        )
        return True

    async def attempts(self, turn: TurnContext) -> bool:
        """A message interrupted `MAX_ATTEMPTS` times is given up, with a note."""
        if turn.item.attempts <= MAX_ATTEMPTS:
            return False
        await turn.say(GAVE_UP_NOTE.format(attempts=turn.item.attempts - 1))
        return True

    async def budget(self, turn: TurnContext) -> bool:
        """Someone (or a workspace) over today's budget waits for tomorrow; admins never do."""
        message = turn.message
        if turn.workspace.access.is_admin(message.user_id):
            return False
        # What turns running now have reserved counts too: a burst is held as its usage will be.
        spent = await self.budgets.stop_for(
            message.thread.team_id, message.user_id, item_id=turn.item.id, channel=channel_budget(turn)
        )
        if spent is None:
            return False
        audit("budget_stop", message.thread, scope=spent.scope, user=message.user_id)
        await run_skipped(self.budgets.store, turn, "the daily budget was spent")
        await turn.say(spent.note)
        self.metrics.turn_finished("budget", turn.started)
        return True

    async def length(self, turn: TurnContext) -> bool:
        """A message too long for a model call is answered with the limit instead."""
        length = len(request_text(turn))
        if length <= self.max_message_chars:
            return False
        await turn.say(TOO_LONG_NOTE.format(length=length, limit=self.max_message_chars))
        self.metrics.turn_finished("too_long", turn.started)
        return True

    def _told_recently(self, user_id: str, thread: ThreadKey) -> bool:
        """Whether this person heard of their refusal here within the interval (and if not,
        they are about to); records older than the interval are dropped as they go."""
        now = time.monotonic()
        cutoff = now - REFUSAL_NOTE_INTERVAL_SECONDS
        for key in [key for key, told in self._refusals_told.items() if told <= cutoff]:
            del self._refusals_told[key]
        key = (user_id, thread)
        if key in self._refusals_told:
            return True
        self._refusals_told[key] = now
        return False
