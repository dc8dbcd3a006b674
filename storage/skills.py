"""The custom skills uploaded from `CUSTOM_SKILLS_DIR`: the Skills API's id and pinned version of
each folder, and the digest of the files that version holds (a new version only when it changes).

Written once over a `Connector`; the SQL of each query is in `queries/<dialect>.sql`.
"""

from __future__ import annotations

from .connector import Connector


class SkillStore:
    """One row per custom skill folder, by its name."""

    connector: Connector

    async def custom_skill(self, name: str) -> tuple[str, str, str] | None:
        """(skill id, pinned version, digest) of the folder `name` as last uploaded."""
        row = await self.connector.one("custom_skill", {"name": name})
        return (str(row[0]), str(row[1]), str(row[2])) if row is not None else None

    async def keep_custom_skill(self, name: str, skill_id: str, version: str, digest: str) -> None:
        await self.connector.execute(
            "keep_custom_skill", {"name": name, "skill_id": skill_id, "version": version, "digest": digest}
        )
