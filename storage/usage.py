"""Usage: one row per answered turn, booked to its thread and to the person who asked, kept
across resets (the tokens were spent).

Written once over a `Connector`; the SQL of each query is in `queries/<dialect>.sql`.
"""

from __future__ import annotations

from .connector import Connector, Row
from .models import ThreadKey, Usage, UsageGroup
from .queue import thread_params


def _usage(row: Row | None) -> Usage:
    return Usage(*(int(value) for value in row)) if row is not None else Usage()


class UsageStore:
    """Tokens and code runs, summed per thread, person, workspace or channel."""

    connector: Connector

    async def record_usage(self, thread: ThreadKey, user_id: str, model: str, usage: Usage) -> None:
        """Book one turn's tokens and code runs to its thread and to the person who asked."""
        await self.connector.execute(
            "record_usage",
            {
                **thread_params(thread), "user": user_id, "model": model, "input_tokens": usage.input_tokens,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "output_tokens": usage.output_tokens, "code_runs": usage.code_runs,
                "web_searches": usage.web_searches, "web_fetches": usage.web_fetches,
            },
        )

    async def thread_usage(self, thread: ThreadKey) -> Usage:
        """Everything a thread's turns used, resets included."""
        return _usage(await self.connector.one("thread_usage", thread_params(thread)))

    async def user_usage(self, team_id: str, user_id: str, since: float = 0.0, channel_id: str | None = None) -> Usage:
        """Everything one person's turns used since `since` (epoch seconds), in every thread
        (or in one channel's)."""
        return _usage(await self.connector.one(
            "user_usage", {"team": team_id, "user": user_id, "since": since, "channel": channel_id}
        ))

    async def team_usage(self, team_id: str, since: float = 0.0) -> Usage:
        """Everything a workspace's turns used since `since` (epoch seconds)."""
        return _usage(await self.connector.one("team_usage", {"team": team_id, "since": since}))

    async def reserve(self, item_id: int, team_id: str, user_id: str, input_tokens: int) -> None:
        """Book what a running turn's next request will read, before it goes out."""
        await self.connector.execute(
            "reserve", {"item": item_id, "team": team_id, "user": user_id, "tokens": input_tokens}
        )

    async def release_reservation(self, item_id: int) -> None:
        """The turn is over: what it used is in its usage now."""
        await self.connector.execute("release_reservation", {"item": item_id})

    async def reserved_input(self, team_id: str, user_id: str | None = None, *, excluding: int | None = None) -> int:
        """Input tokens running turns (of one person, or the workspace) have booked, but for `excluding`."""
        row = await self.connector.one("reserved_input", {"team": team_id, "user": user_id, "excluding": excluding})
        return int(row[0]) if row is not None else 0

    async def usage_by(self, team_id: str, group: UsageGroup, since: float = 0.0) -> dict[str, Usage]:
        """A workspace's usage since `since` (epoch seconds), summed per person (user id) or per
        channel (channel id); who or what used nothing is absent."""
        rows = await self.connector.all(f"usage_by_{group}", {"team": team_id, "since": since})
        return {str(row[0]): _usage(row[1:]) for row in rows}
