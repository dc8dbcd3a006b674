"""What people look at beside the app, and what they think of its answers.

Written once over a `Connector`; the SQL of each query is in `queries/<dialect>.sql`.
"""

from __future__ import annotations

from .connector import Connector
from .models import Feedback, ThreadKey


class PeopleStore:
    """Each person's current view (channel or thread) and their feedback on answers."""

    connector: Connector

    async def set_viewing(self, team_id: str, user_id: str, viewing: ThreadKey | None) -> None:
        """What the person looks at now (`thread_ts` "" for a channel); None forgets it."""
        channel, thread_ts = (viewing.channel_id, viewing.thread_ts) if viewing is not None else ("", "")
        await self.connector.execute(
            "set_viewing",
            {"team": team_id, "user": user_id, "channel": channel, "thread_ts": thread_ts},
        )

    async def viewing(self, team_id: str, user_id: str, since: float = 0.0) -> ThreadKey | None:
        """What the person last looked at, if they told us since `since` (epoch seconds)."""
        row = await self.connector.one("viewing", {"team": team_id, "user": user_id, "since": since})
        if row is None or not row[0]:
            return None
        return ThreadKey(team_id, str(row[0]), str(row[1]))

    async def record_feedback(self, feedback: Feedback) -> None:
        """One person's rating of one answer; a second press changes it."""
        thread = feedback.thread
        await self.connector.execute(
            "record_feedback",
            {
                "team": thread.team_id, "channel": thread.channel_id, "thread_ts": thread.thread_ts,
                "reply_ts": feedback.reply_ts, "user": feedback.user_id, "rating": feedback.rating,
                "model": feedback.model, "item_id": feedback.item_id,
            },
        )

    async def feedback_totals(self, team_id: str, since: float = 0.0) -> dict[str, int]:
        """How many answers were rated `good` and `bad` since `since` (epoch seconds)."""
        rows = await self.connector.all("feedback_totals", {"team": team_id, "since": since})
        return {str(row[0]): int(row[1]) for row in rows}
