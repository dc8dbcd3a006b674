"""What every listener hands its work to: the queue, the store, the Home tab."""

from __future__ import annotations

from dataclasses import dataclass

from slack_bolt.context.async_context import AsyncBoltContext

from storage import Store

from ..outbound.home import HomeTab
from ..queue import TurnQueue
from . import payloads


@dataclass(frozen=True)
class Intake:
    queue: TurnQueue
    store: Store
    home: HomeTab


def team_id_of(context: AsyncBoltContext) -> str:
    """The workspace (or, for org-wide installs, the organisation) a payload came from."""
    return payloads.string(context, "team_id") or payloads.string(context, "enterprise_id") or ""
