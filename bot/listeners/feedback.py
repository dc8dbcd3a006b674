"""The feedback buttons under a finished answer: each press is stored (one rating per person
and answer), counted, written to the audit trail, and acknowledged to that person only."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from storage import Feedback, ThreadKey

from ..ops.logs import audit
from ..outbound.blocks import FEEDBACK_ACTION_ID, RATINGS
from ..outbound.notices import tell_privately
from ..workspaces import Workspace
from . import payloads
from .intake import Intake, team_id_of

THANKS = {
    "good": "Thanks! Glad that answer helped.",
    "bad": "Thanks for saying so. Reply in the thread with what was wrong and I'll try again.",
}


def register(app: AsyncApp, intake: Intake) -> None:
    @app.action(FEEDBACK_ACTION_ID)
    async def on_feedback(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext, workspace: Workspace
    ) -> None:
        await ack()
        feedback = feedback_of(action, body, team_id_of(context))
        if feedback is None:
            payloads.ignore_malformed("feedback button")
            return
        await intake.store.record_feedback(feedback)
        intake.metrics.feedback_given(feedback.rating)
        thread = feedback.thread
        audit("feedback", thread, user=feedback.user_id, rating=feedback.rating, model=feedback.model,
              item=feedback.item_id, reply_ts=feedback.reply_ts)
        await tell_privately(
            workspace.client, thread.channel_id, feedback.user_id, thread.thread_ts or None, THANKS[feedback.rating]
        )


def feedback_of(action: dict[str, Any], body: dict[str, Any], team_id: str) -> Feedback | None:
    """The press a feedback button's payload describes; None when it is not one of ours."""
    fields = payloads.reset_button_fields(action, body)
    try:
        value = json.loads(action.get("value") or "")
    except (TypeError, ValueError):
        return None
    rating = value.get("rating") if isinstance(value, dict) else None
    reply_ts = fields.message_ts if fields is not None else None
    if fields is None or rating not in RATINGS or reply_ts is None:
        return None
    return Feedback(
        ThreadKey(team_id, fields.channel_id, fields.thread_ts), reply_ts, fields.user_id, str(rating),
        str(value.get("model") or ""), fields.item_id,
    )
