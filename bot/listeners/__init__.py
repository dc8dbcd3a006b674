"""Slack -> queue: the start of the data path.

Bolt listeners grouped by feature turn events, commands, shortcuts and buttons into queue
items (or, for a stop, a request to the running turn). A middleware finds each request's
workspace first; payload readers and a tolerant error handler keep a malformed payload from
ever costing more than one log line.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from ..workspaces import WorkspaceResolver
from . import agent, assistant, feedback, forks, home, messages, resets, schedules, settings, stops, uninstall
from .errors import on_unhandled_error
from .intake import Intake
from .workspace import find_workspace

# What the manifest must declare (a test holds the two together).
HANDLED_EVENTS = (
    messages.MENTION_EVENT, messages.MESSAGE_EVENT, home.HOME_OPENED_EVENT, *agent.AGENT_EVENTS,
    *uninstall.UNINSTALL_EVENTS,
)
# What installs made before `agent_view` still send (their manifest had `assistant_view`).
LEGACY_EVENTS = assistant.ASSISTANT_EVENTS
HANDLED_COMMANDS = (resets.RESET_COMMAND, settings.THREADBOX_COMMAND)
HANDLED_SHORTCUTS = (resets.RESET_SHORTCUT_ID,)


def register_listeners(app: AsyncApp, intake: Intake, workspaces: WorkspaceResolver) -> None:
    """Wire every Slack surface the manifest declares to the queue, each request with its workspace."""
    app.error(on_unhandled_error)
    app.use(find_workspace(workspaces))
    for feature in (messages, agent, assistant, resets, stops, feedback, home, settings, forks, schedules, uninstall):
        feature.register(app, intake)


__all__ = ["HANDLED_COMMANDS", "HANDLED_EVENTS", "HANDLED_SHORTCUTS", "LEGACY_EVENTS", "Intake", "register_listeners"]
