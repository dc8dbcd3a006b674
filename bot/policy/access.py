"""Who may use threadbox, and who may reset which thread.

The policy comes from settings (allowlists of channels, people and user groups; guests and
Slack Connect people refused unless allowed). People are looked up with `users.info` (or, when a
burst of new people leaves it no room, in pages of `users.list`) and channel members with
`conversations.members`, each cached briefly, so a busy thread costs no extra Slack calls.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from slack_sdk.web.async_client import AsyncWebClient

from storage import ThreadKey

from ..errors import SLACK_ERRORS
from ..outbound.pacing import has_room
from ..threads import is_dm

logger = logging.getLogger(__name__)

T = TypeVar("T")
PEOPLE_TTL_SECONDS = 300.0
MEMBERS_TTL_SECONDS = 60.0
# When `users.info` has no room (many new people at once), the directory is read instead:
# a page of this many people a call, at most once this often.
DIRECTORY_PAGE = 1000
DIRECTORY_SECONDS = 300.0


@dataclass(frozen=True)
class AccessPolicy:
    """Empty allowlists allow everyone; admins are always allowed."""

    allowed_channels: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()  # user ids, and user group ids (S…)
    admin_users: frozenset[str] = frozenset()
    allow_guests: bool = False
    allow_external: bool = False
    members_change_settings: bool = False
    """`CHANNEL_SETTINGS_BY=members`: a channel's members may change its settings too."""


# The refusal of someone who is not in a thread's conversation.
NOT_IN_CONVERSATION = "not_in_conversation"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # why not: guest, external, channel, user, unknown

    @property
    def note(self) -> str:
        """The short, polite words a refused person reads (only they see them)."""
        return REFUSAL_NOTES.get(self.reason, REFUSAL_NOTES["user"])


REFUSAL_NOTES = {
    "guest": "Sorry, threadbox isn't available to guest accounts in this workspace.",
    "external": "Sorry, threadbox is only available to members of this workspace.",
    "channel": "Sorry, threadbox isn't enabled in this channel. Try a DM with the app, or ask an admin.",
    "user": "Sorry, threadbox isn't enabled for your account. Ask a workspace admin if you need it.",
    "unknown": "Sorry, I couldn't check whether you can use threadbox. Please try again in a moment.",
}


@dataclass
class _TTLCache(Generic[T]):
    ttl: float
    max_entries: int = 5_000
    _entries: dict[str, tuple[float, T]] = field(default_factory=dict)

    async def get(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        hit = self.peek(key)
        if hit is not None:
            return hit
        value = await load()
        self.put(key, value)
        return value

    def peek(self, key: str) -> T | None:
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: str, value: T) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (time.monotonic() + self.ttl, value)
        if len(self._entries) > self.max_entries:  # the oldest entry goes first
            del self._entries[next(iter(self._entries))]


@dataclass(frozen=True)
class Person:
    team_id: str
    is_guest: bool
    name: str
    is_workspace_admin: bool = False
    """A Slack admin or owner of their workspace."""
    tz: str | None = None
    """Their Slack time zone (`Europe/Paris`)."""
    enterprise_id: str = ""
    """Their Enterprise Grid organisation ("" outside Grid)."""
    is_org_admin: bool = False
    """An admin or owner of that organisation."""


def person_of(user: dict[str, Any]) -> Person:
    """What the policy needs of a Slack user object (`users.info`, or one of `users.list`)."""
    profile = user.get("profile") or {}
    org = user.get("enterprise_user")
    org = org if isinstance(org, dict) else {}
    return Person(
        team_id=str(user.get("team_id") or ""),
        enterprise_id=str(org.get("enterprise_id") or ""),
        is_org_admin=bool(org.get("is_admin") or org.get("is_owner")),
        is_guest=bool(user.get("is_restricted") or user.get("is_ultra_restricted")),
        is_workspace_admin=bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner")),
        tz=str(user["tz"]) if isinstance(user.get("tz"), str) and user.get("tz") else None,
        name=str(
            profile.get("display_name") or profile.get("real_name") or user.get("real_name")
            or user.get("name") or user.get("id") or ""
        ),
    )


class AccessControl:
    """Applies an `AccessPolicy` with cached Slack look-ups."""

    def __init__(
        self, slack: AsyncWebClient, policy: AccessPolicy | Callable[[], AccessPolicy], home_team_id: str,
        home_enterprise_id: str = "",
    ) -> None:
        """`policy`: the policy, or where to read it each time (a settings file read again
        changes it); `home_team_id` "" for an org-wide install, which `home_enterprise_id` serves."""
        self.slack = slack
        self._policy = policy
        self.home_team_id = home_team_id
        self.home_enterprise_id = home_enterprise_id
        self._people: _TTLCache[Person] = _TTLCache(PEOPLE_TTL_SECONDS)
        self._groups: _TTLCache[frozenset[str]] = _TTLCache(PEOPLE_TTL_SECONDS)
        self._members: _TTLCache[frozenset[str]] = _TTLCache(MEMBERS_TTL_SECONDS)
        self._directory: asyncio.Future[None] | None = None
        self._directory_at = 0.0

    @property
    def policy(self) -> AccessPolicy:
        return self._policy if isinstance(self._policy, AccessPolicy) else self._policy()

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.policy.admin_users

    def is_colleague(self, person: Person) -> bool:
        """Of this workspace, or of another workspace of its Enterprise Grid organisation."""
        if not person.team_id or person.team_id == self.home_team_id:
            return True
        return bool(self.home_enterprise_id) and person.enterprise_id == self.home_enterprise_id

    async def check(self, user_id: str, channel_id: str | None) -> Decision:
        """May this person use threadbox here (a mention, a follow-up, a file, a reset, a DM)?

        `channel_id=None`: may they use it at all, wherever (their Home tab)."""
        if self.is_admin(user_id):
            return Decision(True)
        person = await self._known(user_id)
        if person is None:  # not cached: the next message asks again
            return Decision(False, "unknown")
        if not self.is_colleague(person) and not self.policy.allow_external:
            return Decision(False, "external")
        if person.is_guest and not self.policy.allow_guests:
            return Decision(False, "guest")
        if (
            channel_id is not None
            and self.policy.allowed_channels
            and not is_dm(channel_id)
            and channel_id not in self.policy.allowed_channels
        ):
            return Decision(False, "channel")
        if not self.policy.allowed_users:
            return Decision(True)
        try:
            listed = await self._listed(user_id)
        except SLACK_ERRORS as error:  # not cached: the next message asks again
            logger.warning("could not read the allowed user groups: %s", error)
            return Decision(False, "unknown")
        return Decision(True) if listed else Decision(False, "user")

    async def check_thread(self, user_id: str, thread: ThreadKey) -> Decision:
        """`check` for one thread (resetting or stopping it, listing it on the Home tab), also
        refusing someone who is not in its conversation."""
        decision = await self.check(user_id, thread.channel_id)
        if decision.allowed and not await self.can_see(user_id, thread):
            return Decision(False, NOT_IN_CONVERSATION)
        return decision

    async def may_change_settings(self, user_id: str, channel_id: str) -> bool:
        """Whether this person may change a channel's settings: threadbox's admins
        (`ADMIN_USERS`) and the workspace's Slack admins and owners anywhere, and with
        `CHANNEL_SETTINGS_BY=members` a channel's members their channel's (never the DMs'
        entry, which every DM shares)."""
        if self.is_admin(user_id) or await self.is_workspace_admin(user_id):
            return True
        if not self.policy.members_change_settings or is_dm(channel_id):
            return False
        if not (await self.check(user_id, channel_id)).allowed:
            return False
        return await self.can_see(user_id, ThreadKey(self.home_team_id or self.home_enterprise_id, channel_id, ""))

    async def is_workspace_admin(self, user_id: str) -> bool:
        """A Slack admin or owner of this workspace (not of another one in a shared channel), or
        of its Enterprise Grid organisation."""
        person = await self._known(user_id)
        if person is None:
            return False
        if person.is_org_admin and self.home_enterprise_id and person.enterprise_id == self.home_enterprise_id:
            return True
        return person.is_workspace_admin and person.team_id in ("", self.home_team_id)

    async def team_of(self, user_id: str) -> str:
        """The workspace a person is in (for an org-wide install, which of the org's); the
        install's own when Slack will not say."""
        person = await self._known(user_id)
        return (person.team_id if person else "") or self.home_team_id

    async def time_zone(self, user_id: str) -> str | None:
        """The person's Slack time zone; None when Slack will not say."""
        person = await self._known(user_id)
        return person.tz if person else None

    async def name(self, user_id: str) -> str:
        """The name people see for `user_id`; the id itself when Slack will not say."""
        person = await self._known(user_id)
        return person.name if person else user_id

    async def _known(self, user_id: str) -> Person | None:
        """The person, or None (logged) when Slack will not say now: not cached, asked again next time."""
        try:
            return await self._person(user_id)
        except SLACK_ERRORS as error:
            logger.info("users.info for %s failed: %s", user_id, error)
            return None

    async def can_see(self, user_id: str, thread: ThreadKey) -> bool:
        """Whether the person is in the thread's conversation (a channel member, or the DM's person)."""
        try:
            members = await self._members.get(thread.channel_id, lambda: self._channel_members(thread.channel_id))
        except SLACK_ERRORS as error:
            logger.info("could not list the members of %s: %s", thread.channel_id, error)
            return False
        return user_id in members

    async def _person(self, user_id: str) -> Person:
        known = self._people.peek(user_id)
        if known is None and not has_room(self.slack, "users.info"):
            await self._read_directory()  # many new people at once: one page holds hundreds
            known = self._people.peek(user_id)
        return known or await self._people.get(user_id, lambda: self._look_up(user_id))

    async def _look_up(self, user_id: str) -> Person:
        return person_of((await self.slack.users_info(user=user_id))["user"])

    async def _read_directory(self) -> None:
        """Everyone in the workspace into the cache (`users.list`, a page of up to 1,000 people a
        call), at most once per `DIRECTORY_SECONDS`, however many turns ask at once."""
        stale = time.monotonic() - self._directory_at > DIRECTORY_SECONDS
        if self._directory is None or (self._directory.done() and stale):
            self._directory_at = time.monotonic()
            self._directory = asyncio.ensure_future(self._read_pages())
        try:
            await asyncio.shield(self._directory)
        except SLACK_ERRORS as error:
            logger.info("users.list failed (%s); asking users.info", error)

    async def _read_pages(self) -> None:
        cursor = None
        while True:
            page = await self.slack.users_list(limit=DIRECTORY_PAGE, cursor=cursor)
            for user in page.get("members") or []:
                if user.get("id"):
                    self._people.put(str(user["id"]), person_of(user))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    async def _listed(self, user_id: str) -> bool:
        if user_id in self.policy.allowed_users:
            return True
        for group_id in sorted(g for g in self.policy.allowed_users if g.startswith("S")):
            if user_id in await self._groups.get(group_id, functools.partial(self._group_members, group_id)):
                return True
        return False

    async def _group_members(self, group_id: str) -> frozenset[str]:
        return frozenset((await self.slack.usergroups_users_list(usergroup=group_id))["users"])

    async def _channel_members(self, channel_id: str) -> frozenset[str]:
        members: set[str] = set()
        cursor = None
        while True:
            page = await self.slack.conversations_members(channel=channel_id, limit=200, cursor=cursor)
            members.update(page.get("members") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return frozenset(members)
