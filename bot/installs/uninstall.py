"""An uninstall forgets: the workspace's threads, histories, queue, usage, settings and
schedules leave the database, and its files leave the Files API; one audit line says so.

Bolt's revocation listeners remove the installation itself (`AsyncTokenRevocationListeners`),
after threadbox's data, so an uninstall cut short is done again when Slack retries the event.
A workspace that installs again starts fresh.
"""

from __future__ import annotations

import logging
from typing import Any

import anthropic
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.listener.async_builtins import AsyncTokenRevocationListeners

from storage import Store

from ..model.files import delete_files
from ..model.transcript import thread_file_ids
from ..ops.logs import audit
from ..workspaces import Workspace, WorkspaceResolver

logger = logging.getLogger(__name__)


class Uninstalls:
    def __init__(
        self, store: Store, claude: anthropic.AsyncAnthropic, workspaces: WorkspaceResolver,
        revocations: AsyncTokenRevocationListeners | None = None,
    ) -> None:
        """`revocations`: Bolt's, over the installation store (None with one bot token: no store)."""
        self.store = store
        self.claude = claude
        self.workspaces = workspaces
        self.revocations = revocations

    async def forget(self, workspace: Workspace, context: AsyncBoltContext) -> None:
        """Delete everything kept of the workspace, then its installation."""
        threads, files = await self.store.workspace_files(workspace.team_id)
        for thread in threads:
            files += thread_file_ids((await self.store.load_conversation(thread)).history)
        unique = sorted(set(files))
        deleted = await delete_files(self.claude, unique)
        await self.store.forget_workspace(workspace.team_id)
        if self.revocations is not None:
            await self.revocations.handle_app_uninstalled_events(context)
        audit(
            "uninstalled", None, team=workspace.team_id, enterprise=workspace.enterprise_id,
            threads=len(threads), files=deleted, files_left=len(unique) - deleted,
        )
        self.workspaces.forget(workspace.install_key)

    async def tokens_revoked(self, event: dict[str, Any], workspace: Workspace, context: AsyncBoltContext) -> None:
        """The bot's token revoked is an uninstall; people's own tokens (threadbox keeps none:
        it installs bot-only) are Bolt's to drop."""
        tokens = event.get("tokens")
        if isinstance(tokens, dict) and tokens.get("bot"):
            await self.forget(workspace, context)
        elif self.revocations is not None:
            await self.revocations.handle_tokens_revoked_events(event, context)
