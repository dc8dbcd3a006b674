"""The caps on turns running at once, counted from the claim rows alone (never the waiting queue)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .connector import Connection
from .models import TurnLimits


def person_lock(team_id: str, user_id: str) -> int:
    """The advisory lock under which a person's turns are admitted (a signed 64-bit key)."""
    digest = hashlib.blake2b(f"{team_id}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class BusyTurns:
    """The turns that count against the caps now, by person (read from the claims alone)."""

    by_person: dict[tuple[str, str], int]

    @classmethod
    async def read(cls, db: Connection) -> BusyTurns:
        return cls({(str(team), str(user)): int(n) for team, user, n in await db.all("busy_turns")})

    @property
    def total(self) -> int:
        return sum(self.by_person.values())

    def full(self, limits: TurnLimits) -> bool:
        return limits.overall is not None and self.total >= limits.overall

    def capped(self, limits: TurnLimits) -> list[dict[str, str]]:
        """The people at the per-person cap, as the queries take them."""
        if limits.per_person is None:
            return []
        return [{"team_id": t, "user_id": u} for (t, u), n in self.by_person.items() if n >= limits.per_person]

    def fits(self, team_id: str, user_id: str, limits: TurnLimits) -> bool:
        mine = self.by_person.get((team_id, user_id), 0)
        return not self.full(limits) and (limits.per_person is None or mine < limits.per_person)
