"""Agent Skills: tested instructions and scripts mounted in the container at `/skills/{name}/`.

`SKILLS` names Anthropic's own (`xlsx`, `pptx`, `docx`, `pdf`, at `latest`); each folder of
`CUSTOM_SKILLS_DIR` with a `SKILL.md` is uploaded through the Skills API once, and again (as a
new, pinned version) only when its files change: their digest is kept in the database. The
list goes into every request in the same order, so the prompt cache holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
from anthropic.types import SkillParams

from storage import Store

from ..errors import StartupError
from .errors import api_message

logger = logging.getLogger(__name__)

ANTHROPIC_SKILLS = ("xlsx", "pptx", "docx", "pdf")
MAX_SKILLS = 20
"""The API takes at most this many skills in one request."""


@dataclass(frozen=True)
class CustomSkill:
    name: str
    """The folder's name."""
    files: list[Any]
    digest: str


def anthropic_skills(names: tuple[str, ...]) -> list[SkillParams]:
    return [{"type": "anthropic", "skill_id": name, "version": "latest"} for name in names]


async def skills_in_use(
    claude: anthropic.AsyncAnthropic, store: Store, names: tuple[str, ...], custom_dir: str | None
) -> tuple[dict[str, SkillParams], tuple[str, ...]]:
    """The skills a channel may choose from (Anthropic's, and each custom folder, uploaded), by
    name, and the names a new thread gets unless its channel says otherwise: `names` and every
    custom skill. A broken custom skill, or more than `MAX_SKILLS` (found before anything is
    uploaded), stops start-up."""
    folders = await custom_folders(custom_dir)
    problem = too_many(len(names) + len(folders))
    if problem:
        raise StartupError(problem)
    shelf: dict[str, SkillParams] = {name: anthropic_skills((name,))[0] for name in ANTHROPIC_SKILLS}
    for folder in folders:
        shelf[folder.name] = await uploaded(claude, store, folder)
    return shelf, (*names, *(folder.name for folder in folders))


def too_many(count: int) -> str | None:
    """Why `count` skills cannot go into a request, or None when they can."""
    if count <= MAX_SKILLS:
        return None
    return f"{count} skills (SKILLS and CUSTOM_SKILLS_DIR): the API takes at most {MAX_SKILLS}"


async def custom_folders(custom_dir: str | None) -> list[CustomSkill]:
    """Each folder with a `SKILL.md` in `custom_dir`, in name order, read without blocking."""
    if not custom_dir:
        return []
    found = await asyncio.to_thread(_read_skill_folders, Path(custom_dir))
    if found is None:
        raise StartupError(f"CUSTOM_SKILLS_DIR {custom_dir!r} is not a directory")
    folders = []
    for name, files in found:
        digest = hashlib.sha256()
        for path, content in files:
            digest.update(path.encode() + b"\0" + content + b"\0")
        folders.append(CustomSkill(name, list(files), digest.hexdigest()))
    return folders


def _read_skill_folders(root: Path) -> list[tuple[str, list[tuple[str, bytes]]]] | None:
    """Each skill folder's files as the Skills API takes them: (path from the folder's parent, bytes)."""
    if not root.is_dir():
        return None
    folders = []
    for folder in sorted(p for p in root.iterdir() if (p / "SKILL.md").is_file()):
        files = sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in folder.rglob("*") if p.is_file())
        folders.append((folder.name, files))
    return folders


async def uploaded(claude: anthropic.AsyncAnthropic, store: Store, folder: CustomSkill) -> SkillParams:
    """The folder's skill at its pinned version: uploaded when new, a new version when changed."""
    known = await store.custom_skill(folder.name)
    try:
        exists = known is not None and await _exists(claude, known[0])  # it may be deleted in the Console
        if known is not None and exists and known[2] == folder.digest:
            return {"type": "custom", "skill_id": known[0], "version": known[1]}
        if known is not None and exists:
            version = await claude.skills.versions.create(known[0], files=folder.files)
            skill_id, version_id = known[0], version.id
        else:
            created = await claude.skills.create(files=folder.files, display_name=folder.name)
            skill_id, version_id = created.id, created.latest_version_id or ""
    except anthropic.APIStatusError as error:
        raise StartupError(f"the custom skill in {folder.name}/ was refused: {api_message(error)}") from None
    except anthropic.APIConnectionError as error:
        raise StartupError(f"could not upload the custom skill in {folder.name}/ ({error})") from None
    await store.keep_custom_skill(folder.name, skill_id, version_id, folder.digest)
    logger.info("custom skill %s is %s version %s", folder.name, skill_id, version_id)
    return {"type": "custom", "skill_id": skill_id, "version": version_id}


async def _exists(claude: anthropic.AsyncAnthropic, skill_id: str) -> bool:
    try:
        await claude.skills.retrieve(skill_id)
    except anthropic.NotFoundError:
        return False
    return True
