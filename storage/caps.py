"""The caps on turns running at once, counted from the claim rows alone (never the waiting
queue), reading only what the caps that are set ask for."""

from __future__ import annotations

from dataclasses import dataclass

from .connector import Connection, lock_key
from .models import TurnLimits


def person_lock(team_id: str, user_id: str) -> int:
    """The advisory lock under which a person's turns are admitted."""
    return lock_key(f"{team_id}:{user_id}")


@dataclass(frozen=True)
class BusyTurns:
    """What a claim must pass over: the people at the per-person cap, and whether the
    overall cap is full."""

    at_cap: tuple[tuple[str, str], ...] = ()
    total: int = 0

    @classmethod
    async def read(cls, db: Connection, limits: TurnLimits) -> BusyTurns:
        at_cap = () if limits.per_person is None else tuple(
            (str(team), str(user)) for team, user in await db.all("people_at_cap", {"cap": limits.per_person})
        )
        return cls(at_cap, await turns_running(db) if limits.overall is not None else 0)

    def full(self, limits: TurnLimits) -> bool:
        return limits.overall is not None and self.total >= limits.overall

    def capped(self) -> list[dict[str, str]]:
        """The people at the per-person cap, as the queries take them."""
        return [{"team_id": team, "user_id": user} for team, user in self.at_cap]


async def turns_running(db: Connection, team_id: str | None = None, user_id: str | None = None) -> int:
    """Running turns that count against the caps: everyone's, or one person's."""
    if team_id is None:
        row = await db.one("turns_running")
    else:
        row = await db.one("turns_running_of", {"team": team_id, "user": user_id})
    return int(row[0]) if row else 0


async def fits(db: Connection, team_id: str, user_id: str, limits: TurnLimits) -> bool:
    """Whether one more turn of this person fits every cap (asked under their admission locks)."""
    if limits.overall is not None and await turns_running(db) >= limits.overall:
        return False
    return limits.per_person is None or await turns_running(db, team_id, user_id) < limits.per_person
