"""The Bolt middleware that finds each request's workspace before any listener runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.async_context import AsyncBoltContext

from ..workspaces import WorkspaceResolver
from . import payloads

logger = logging.getLogger(__name__)

Middleware = Callable[..., Awaitable[None]]


def find_workspace(workspaces: WorkspaceResolver) -> Middleware:
    """Put the request's `Workspace` in the context (listeners take it as `workspace`).

    A request from a workspace threadbox does not serve is acknowledged and dropped: an
    unacknowledged one would come back as a retry."""

    async def middleware(
        context: AsyncBoltContext, body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> None:
        workspace = await workspaces.resolve(
            payloads.string(context, "team_id"), payloads.string(context, "enterprise_id")
        )
        if workspace is None:
            logger.warning("ignoring a request from a workspace threadbox is not installed in")
            if context.ack is not None:
                await context.ack()
            return
        shared = payloads.shared_channel(context, body)
        if shared is not None:
            workspace = await workspaces.in_shared_channel(workspace, shared[0], claim=shared[1])
        context["workspace"] = workspace
        await next()

    return middleware
