"""`app_uninstalled` and `tokens_revoked`: the workspace's data is deleted, then its installation."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext

from ..workspaces import Workspace
from .intake import Intake

UNINSTALLED_EVENT = "app_uninstalled"
TOKENS_REVOKED_EVENT = "tokens_revoked"
UNINSTALL_EVENTS = (UNINSTALLED_EVENT, TOKENS_REVOKED_EVENT)


def register(app: AsyncApp, intake: Intake) -> None:
    # Acknowledged once the data is gone: an uninstall cut short comes back as Slack's retry.
    @app.event(UNINSTALLED_EVENT)
    async def on_uninstalled(context: AsyncBoltContext, workspace: Workspace) -> None:
        await intake.uninstalls.forget(workspace, context)

    @app.event(TOKENS_REVOKED_EVENT)
    async def on_tokens_revoked(event: dict[str, Any], context: AsyncBoltContext, workspace: Workspace) -> None:
        await intake.uninstalls.tokens_revoked(event, workspace, context)
