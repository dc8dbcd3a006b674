"""Resetting and stopping a thread, for every form of the request alike (in-thread words, the
`/reset` command and picker, the shortcut, the Home tab's and the reply's buttons)."""

from __future__ import annotations

from dataclasses import dataclass

from storage import ResetRequest, StopOutcome, Store, ThreadKey

from ..ops.logs import audit
from ..policy.access import NOT_IN_CONVERSATION, AccessControl, Decision
from ..queue import TurnQueue
from ..turn.resets import reset_outcome

NOTHING_TO_STOP_NOTE = "Nothing is running in this thread right now, so there is nothing to stop."
QUEUED_RESET_NOTE = (
    ":hourglass_flowing_sand: That thread is busy: the reset is queued and happens as soon as"
    " what was asked before it is answered (anything sent after it runs in the fresh container)."
)


@dataclass(frozen=True)
class ResetAnswer:
    """What the person who asked for a reset is told right away (None: the reset's own turn
    tells them through their `response_url` in a moment), and whether it was queued at all."""

    text: str | None
    queued: bool = False


async def request_reset(
    queue: TurnQueue,
    store: Store,
    access: AccessControl,
    thread: ThreadKey,
    user_id: str,
    response_url: str | None,
    replace_original: bool = False,
) -> ResetAnswer:
    """Queue a reset in the thread's order.

    Someone who cannot see the thread hears exactly what they would for a thread with no
    conversation. Without a `response_url`, the answer always has words.
    """
    refusal = await refusal_for(access, thread, user_id, "reset")
    if refusal is not None:
        outside = refusal.reason == NOT_IN_CONVERSATION
        return ResetAnswer(reset_outcome(thread, existed=False) if outside else refusal.note)
    if not await store.has_conversation(thread):
        return ResetAnswer(reset_outcome(thread, existed=False))
    queued = await queue.request_reset(ResetRequest(thread, user_id, response_url, replace_original))
    if queued.waits:
        return ResetAnswer(QUEUED_RESET_NOTE, queued=True)
    return ResetAnswer(None if response_url else reset_outcome(thread, existed=True), queued=True)


async def request_stop(
    queue: TurnQueue,
    access: AccessControl,
    thread: ThreadKey,
    user_id: str,
    *,
    message_ts: str | None = None,
    item_id: int | None = None,
) -> StopOutcome | str:
    """Ask for the thread's running turn to stop: the store's outcome, or why the person may not."""
    refusal = await refusal_for(access, thread, user_id, "stop")
    if refusal is not None:
        return refusal.note if refusal.reason != NOT_IN_CONVERSATION else NOTHING_TO_STOP_NOTE
    outcome = await queue.request_stop(thread, user_id, message_ts=message_ts, item_id=item_id)
    if outcome == "stopping":
        audit("stop_requested", thread, user=user_id)
    return outcome


async def refusal_for(access: AccessControl, thread: ThreadKey, user_id: str, action: str) -> Decision | None:
    """Why the person may not reset or stop the thread (audited), or None when they may.

    Someone outside its conversation is answered as for a thread with nothing going on, so
    nobody learns what happens in a channel they cannot see."""
    decision = await access.check_thread(user_id, thread)
    if decision.allowed:
        return None
    audit("refused", thread, reason=decision.reason, action=action, user=user_id)
    return decision
