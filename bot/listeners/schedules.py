"""The *Pause*, *Resume* and *Delete* buttons under `!schedules` (refused, with words, to
anyone but the scheduler, the thread's participants and admins)."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from ..schedules.commands import action_schedule_id, change_schedule
from ..workspaces import Workspace
from . import payloads
from .intake import Intake

SCHEDULE_BUTTONS = re.compile(r"^schedule_(pause|resume|delete)$")


def register(app: AsyncApp, intake: Intake) -> None:
    @app.action(SCHEDULE_BUTTONS)
    async def on_schedule_button(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], respond: AsyncRespond, workspace: Workspace
    ) -> None:
        await ack()
        tell = payloads.safe(respond, body)
        user_id, schedule_id = payloads.button_user(body), action_schedule_id(action)
        if user_id is None or schedule_id is None:
            payloads.ignore_malformed("schedule button")
            return
        said = await change_schedule(
            intake.store, intake.clock, workspace, schedule_id, str(action.get("action_id")), user_id
        )
        await tell(said)
