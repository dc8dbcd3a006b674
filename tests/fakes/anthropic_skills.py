"""The fake Anthropic's Agent Skills: the Skills API (create, versions, list, retrieve, delete)
and what a Messages request may name in `container.skills` (see `shared` API facts: Skills).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, web

ANTHROPIC_SKILLS = ("xlsx", "pptx", "docx", "pdf")
MAX_SKILLS = 20
MAX_SKILL_BYTES = 30 * 1024 * 1024
_NAME = re.compile(r"^[a-z0-9-]{1,64}$")
_FRONTMATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeSkill:
    id: str
    display_name: str
    created_at: float
    versions: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": "skill", "source": "custom", "display_name": self.display_name,
            "created_at": iso_time(self.created_at), "updated_at": iso_time(self.versions[-1]["at"]),
            "latest_version_id": self.versions[-1]["id"],
        }


def version_json(skill: FakeSkill, version: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": version["id"], "type": "skill_version", "skill_id": skill.id, "name": version["name"],
        "description": version["description"], "created_at": iso_time(version["at"]),
    }


class SkillsAPI:
    """`/v1/skills` as the API serves it; `skills` and `uploads` let a test look inside."""

    def __init__(self, error: Any) -> None:
        self._error = error  # FakeAnthropic._error(request, status, type, message)
        self.skills: dict[str, FakeSkill] = {}
        self.uploads: list[dict[str, Any]] = []
        """Each create or new version: skill id, version id, the files' paths and digest."""
        self._n = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/skills", self._create)
        app.router.add_get("/v1/skills", self._list)
        app.router.add_get("/v1/skills/{skill_id}", self._retrieve)
        app.router.add_delete("/v1/skills/{skill_id}", self._delete)
        app.router.add_post("/v1/skills/{skill_id}/versions", self._new_version)
        app.router.add_get("/v1/skills/{skill_id}/versions", self._versions)

    # --- what a Messages request may name --------------------------------------------------

    def container_problem(self, body: dict[str, Any], uses_code: bool) -> str:
        """What the API refuses in `container.skills`, or ""."""
        container = body.get("container")
        skills = container.get("skills") if isinstance(container, dict) else None
        if skills is None:
            return ""
        if not isinstance(skills, list):
            return "container.skills: Input should be a valid list"
        if len(skills) > MAX_SKILLS:
            return f"container.skills: at most {MAX_SKILLS} skills may be used in one request, got {len(skills)}"
        if skills and not uses_code:
            return "container.skills: skills require the code execution tool in `tools`"
        for i, skill in enumerate(skills):
            if not isinstance(skill, dict) or skill.get("type") not in ("anthropic", "custom"):
                return f"container.skills.{i}.type: Input should be 'anthropic' or 'custom'"
            skill_id, version = skill.get("skill_id"), skill.get("version", "latest")
            if skill["type"] == "anthropic" and skill_id not in ANTHROPIC_SKILLS:
                return f"container.skills.{i}: skill '{skill_id}' not found"
            if skill["type"] == "custom":
                found = self.skills.get(str(skill_id))
                if found is None:
                    return f"container.skills.{i}: skill '{skill_id}' not found"
                if version != "latest" and version not in {v["id"] for v in found.versions}:
                    return f"container.skills.{i}: version '{version}' of skill '{skill_id}' not found"
        return ""

    # --- the Skills API ----------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        files, fields = await _read_files(request)
        version, problem = self._version_of(files)
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        self._n += 1
        skill = FakeSkill(f"skill_{self._n:04d}", fields.get("display_name") or version["name"], time.time())
        skill.versions.append(version)
        self.skills[skill.id] = skill
        self.uploads.append({"skill_id": skill.id, "version": version["id"], "paths": sorted(files)})
        return web.json_response(skill.as_json())

    async def _new_version(self, request: web.Request) -> web.Response:
        skill = self.skills.get(request.match_info["skill_id"])
        if skill is None:
            return self._error(request, 404, "not_found_error", "skill not found")
        files, _ = await _read_files(request)
        version, problem = self._version_of(files)
        if problem:
            return self._error(request, 400, "invalid_request_error", problem)
        skill.versions.append(version)
        self.uploads.append({"skill_id": skill.id, "version": version["id"], "paths": sorted(files)})
        return web.json_response(version_json(skill, version))

    async def _list(self, request: web.Request) -> web.Response:
        data = [skill.as_json() for skill in self.skills.values()]
        return web.json_response({"data": data, "has_more": False, "next_page": None})

    async def _retrieve(self, request: web.Request) -> web.Response:
        skill = self.skills.get(request.match_info["skill_id"])
        if skill is None:
            return self._error(request, 404, "not_found_error", "skill not found")
        return web.json_response(skill.as_json())

    async def _versions(self, request: web.Request) -> web.Response:
        skill = self.skills.get(request.match_info["skill_id"])
        if skill is None:
            return self._error(request, 404, "not_found_error", "skill not found")
        data = [version_json(skill, v) for v in skill.versions]
        return web.json_response({"data": data, "has_more": False, "next_page": None})

    async def _delete(self, request: web.Request) -> web.Response:
        skill = self.skills.pop(request.match_info["skill_id"], None)
        if skill is None:
            return self._error(request, 404, "not_found_error", "skill not found")
        return web.json_response({"id": skill.id, "type": "skill_deleted"})

    def _version_of(self, files: dict[str, bytes]) -> tuple[dict[str, Any], str]:
        """A new version of the uploaded files, or why the API refuses them."""
        if not files:
            return {}, "files: at least one file is required"
        tops = {path.split("/", 1)[0] for path in files}
        if len(tops) != 1 or any("/" not in path for path in files):
            return {}, "files: all files must be in the same top-level directory"
        top = tops.pop()
        if sum(len(content) for content in files.values()) > MAX_SKILL_BYTES:
            return {}, "files: a skill may be at most 30 MB"
        manifest = files.get(f"{top}/SKILL.md")
        if manifest is None:
            return {}, "SKILL.md file must be exactly in the top-level folder."
        front = _FRONTMATTER.match(manifest.decode("utf-8", "replace"))
        meta = dict(line.split(":", 1) for line in front.group(1).splitlines() if ":" in line) if front else {}
        name, description = meta.get("name", "").strip(), meta.get("description", "").strip()
        if not _NAME.match(name):
            return {}, "SKILL.md: `name` must be 1-64 lowercase letters, digits and hyphens"
        if not description:
            return {}, "SKILL.md: `description` is required"
        digest = hashlib.sha256(b"".join(p.encode() + files[p] for p in sorted(files))).hexdigest()
        self._n += 1
        return {"id": f"skver_{self._n:04d}", "name": name, "description": description, "at": time.time(),
                "digest": digest}, ""


async def _read_files(request: web.Request) -> tuple[dict[str, bytes], dict[str, str]]:
    """The multipart body's `files` (by path) and its other fields."""
    files: dict[str, bytes] = {}
    fields: dict[str, str] = {}
    if request.content_type != "multipart/form-data":
        return files, fields
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.filename is not None:
            files[part.filename.replace("\\", "/")] = bytes(await part.read())
        else:
            fields[part.name or ""] = await part.text()
    return files, fields
