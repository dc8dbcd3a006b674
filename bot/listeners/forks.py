"""The *Fork this thread* button under `!files`: a `!fork` from the person who pressed it,
taking its place in the thread's order like the message it stands for."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from storage import InboxMessage, ThreadKey

from ..outbound.blocks import FORK_ACTION_ID
from .buttons import thread_button
from .intake import Intake
from .payloads import ButtonFields

OUT_OF_DATE_NOTE = "That button is out of date; type `!fork` in the thread instead."


def register(app: AsyncApp, intake: Intake) -> None:
    preamble = thread_button(OUT_OF_DATE_NOTE, replace_original=False)

    @app.action(FORK_ACTION_ID, middleware=[preamble])
    async def on_fork_button(body: dict[str, Any], button: ButtonFields, thread: ThreadKey) -> None:
        actions = body.get("actions")
        pressed = actions[0].get("action_ts") if isinstance(actions, list) and actions else None
        if isinstance(pressed, str) and pressed:
            await intake.queue.submit(InboxMessage(thread, pressed, button.user_id, "!fork"), addressed=False)
