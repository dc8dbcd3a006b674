"""The app's Home tab: each person's threads, a *Reset* button each, and for admins the
workspace's usage today and this week, per person and per channel.

The view is built from the store whenever someone opens the tab (and again after a Reset
pressed there), so it keeps no state of its own. Only threads the person may still see are
listed: they must be allowed in the channel and still be in the conversation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage import PersonThread, Store, ThreadKey, Usage

from ..errors import SLACK_ERRORS
from ..policy.access import AccessControl
from ..policy.budgets import DAY_SECONDS, Budgets, start_of_utc_day
from ..policy.usage import Prices, dollars, web_words
from ..schedules.commands import summary
from ..threads import is_dm
from ..workspaces import Workspace
from .blocks import context, header, reset_button, section
from .settings_view import channel_settings_blocks
from .text import escape_mrkdwn, quoted, slack_date

logger = logging.getLogger(__name__)

# A home view holds at most 100 blocks: the threads take one each.
SHOWN_THREADS = 20
# The most recently active threads looked at to find the SHOWN_THREADS the person may still see.
CANDIDATE_THREADS = 100
SHOWN_SCHEDULES = 10
# Lines per table of the admins' totals; the rest are summed up in one line.
TABLE_ROWS = 15
WEEK_DAYS = 7
TITLE_CHARS = 150
DM_CHANNELS = "Direct messages"


@dataclass(frozen=True)
class Notice:
    """What became of a button pressed on the Home tab, shown at its top."""

    text: str
    thread: ThreadKey | None = None  # the thread it concerns, named when the person may see it


@dataclass(frozen=True)
class Period:
    label: str
    since: float  # epoch seconds


def periods(now: float) -> list[Period]:
    """Today (the UTC day so far) and this week (the last seven UTC days, today included)."""
    today = start_of_utc_day(now)
    return [Period("Today", today), Period("This week", today - (WEEK_DAYS - 1) * DAY_SECONDS)]


class HomeTab:
    """Builds each person's Home tab from the store and publishes it with `views.publish`."""

    def __init__(self, store: Store, prices: Prices, budgets: Budgets) -> None:
        self.store = store
        self.prices = prices
        self.budgets = budgets

    async def publish(self, workspace: Workspace, team_id: str, user_id: str, notice: Notice | None = None) -> None:
        """Publish the person's Home tab; a refused publish is one log line (the next opening
        tries again)."""
        view = await self.view(workspace, team_id, user_id, notice)
        try:
            await workspace.client.views_publish(user_id=user_id, view=view)
        except SLACK_ERRORS as error:
            logger.warning("could not publish the Home tab of %s: %s", user_id, error)

    async def view(
        self,
        workspace: Workspace,
        team_id: str,
        user_id: str,
        notice: Notice | None = None,
        *,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The `home` view for one person, as of `now`."""
        now = time.time() if now is None else now
        access, bot_user_id = workspace.access, workspace.bot_user_id
        blocks: list[dict[str, Any]] = [header("Your threadbox threads")]
        decision = await access.check(user_id, None)
        if not decision.allowed:  # no data at all, not even their own
            blocks.append(section(escape_mrkdwn(decision.note)))
            return {"type": "home", "blocks": blocks}

        threads, capped = await self._visible_threads(access, team_id, user_id)
        titles = {item.thread: quoted(item.last_text, bot_user_id, TITLE_CHARS) for item in threads[:SHOWN_THREADS]}
        intro = await self._intro(team_id, user_id, now, has_threads=bool(threads), admin=access.is_admin(user_id))
        blocks.append(context(*intro))
        if notice is not None:
            blocks.append(section(notice_text(notice, titles)))
        blocks.append({"type": "divider"})
        if threads:
            shown = threads[:SHOWN_THREADS]
            blocks.extend(self._thread_block(item, titles[item.thread], workspace.url) for item in shown)
            if len(threads) > SHOWN_THREADS:
                blocks.append(context(more_threads(len(threads) - SHOWN_THREADS, capped=capped)))
        else:
            blocks.append(section(empty_state(bot_user_id)))
        blocks.extend(await self._schedules(team_id, user_id, "Your schedules"))
        if access.is_admin(user_id):
            blocks.extend(await self._workspace_totals(team_id, now))
        if access.is_admin(user_id) or await access.is_workspace_admin(user_id):
            blocks.extend(await self._schedules(team_id, None, "The workspace's schedules"))
            stored = await self.store.team_channel_settings(team_id)
            blocks.extend(channel_settings_blocks(workspace.channels, stored, limit=TABLE_ROWS))
        return {"type": "home", "blocks": blocks}

    async def _schedules(self, team_id: str, user_id: str | None, title: str) -> list[dict[str, Any]]:
        """A person's schedules across threads (None: everyone's), one line each; `!schedules`
        in a thread has the buttons."""
        schedules = await self.store.person_schedules(team_id, user_id, SHOWN_SCHEDULES + 1)
        if not schedules:
            return []
        lines = [f"• {summary(s)} in <#{s.thread.channel_id}>" for s in schedules[:SHOWN_SCHEDULES]]
        if len(schedules) > SHOWN_SCHEDULES:
            lines.append("…and more: `!schedules` in each thread lists its own.")
        return [{"type": "divider"}, header(title), section("\n".join(lines))]

    # --- the person's threads ---------------------------------------------------------------

    async def _visible_threads(
        self, access: AccessControl, team_id: str, user_id: str
    ) -> tuple[list[PersonThread], bool]:
        """Their threads, most recently active first, without those in channels they have
        left or may no longer use threadbox in (each channel is looked up once, cached); and
        whether older threads were not looked at."""
        candidates = await self.store.person_threads(team_id, user_id, CANDIDATE_THREADS)
        allowed: dict[str, bool] = {}
        visible = []
        for item in candidates:
            channel = item.thread.channel_id
            if channel not in allowed:
                allowed[channel] = (await access.check_thread(user_id, item.thread)).allowed
            if allowed[channel]:
                visible.append(item)
        return visible, len(candidates) >= CANDIDATE_THREADS

    async def _intro(self, team_id: str, user_id: str, now: float, *, has_threads: bool, admin: bool) -> list[str]:
        """What the person has spent today and this week, and when this view was made."""
        as_of = f"As of {slack_date(now, '{date_short_pretty} at {time}')}."
        if not has_threads:
            return [as_of]
        spent = []
        for period in periods(now):
            usage = await self.store.user_usage(team_id, user_id, since=period.since)
            spent.append(f"{period.label.lower()}: {usage_words(usage, self.prices, turns=False)}")
        mine = f"*Your usage* {' · '.join(spent)}"
        budget = self.budgets.limits(team_id).per_person
        if budget is not None and not admin:
            mine += f" · daily budget: {budget.describe()}"
        return [mine, f"Most recently active first; days are UTC days. {as_of}"]

    def _thread_block(self, item: PersonThread, thread_title: str, workspace_url: str | None) -> dict[str, Any]:
        thread = item.thread
        details = [usage_words(item.usage, self.prices)]
        link = permalink(workspace_url, thread)
        if link:
            details.append(f"<{link}|Open>")
        text = "\n".join(
            [
                f"*{place(thread)}* · last active {slack_date(item.last_active, '{date_short_pretty} at {time}')}",
                thread_title,
                " · ".join(details),
            ]
        )
        return section(text, accessory=reset_button(thread))

    # --- admins: the workspace's totals ------------------------------------------------------

    async def _workspace_totals(self, team_id: str, now: float) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [
            {"type": "divider"},
            header("Usage in this workspace"),
            context(
                "You see this as an admin. *Today* is the UTC day so far, *this week* the last seven UTC"
                " days with today. Dollar amounts are estimates at the configured prices."
            ),
        ]
        for period in periods(now):
            people = await self.store.usage_by(team_id, "person", period.since)
            channels = by_channel(await self.store.usage_by(team_id, "channel", period.since))
            total = sum(people.values(), Usage())
            rated = await self.store.feedback_totals(team_id, period.since)
            blocks.append(section(f"*{period.label}:* {usage_words(total, self.prices)}{feedback_words(rated)}"))
            if total.turns:
                blocks.append(section("*By person*\n" + self._table(people, lambda user: f"<@{user}>")))
                blocks.append(section("*By channel*\n" + self._table(channels, channel_name)))
        return blocks

    def _table(self, usage: dict[str, Usage], name: Callable[[str], str]) -> str:
        """One line per key, the biggest spender first; beyond TABLE_ROWS, one summing line."""
        rows = sorted(usage.items(), key=lambda kv: (-self.prices.cost(kv[1]), -kv[1].total_tokens, kv[0]))
        lines = [f"• {name(key)}: {usage_words(spent, self.prices)}" for key, spent in rows[:TABLE_ROWS]]
        rest = rows[TABLE_ROWS:]
        if rest:
            lines.append(f"• {len(rest)} more: {usage_words(sum((u for _, u in rest), Usage()), self.prices)}")
        return "\n".join(lines)


# --- pieces of the view ---------------------------------------------------------------------


def place(thread: ThreadKey) -> str:
    """Where the thread is: a channel link, or a DM (which only its person can open)."""
    if is_dm(thread.channel_id):
        return "Direct message" if thread.is_dm_top_level else "Direct message thread"
    return f"<#{thread.channel_id}>"


def channel_name(channel_id: str) -> str:
    return DM_CHANNELS if channel_id == DM_CHANNELS else f"<#{channel_id}>"


def by_channel(usage: dict[str, Usage]) -> dict[str, Usage]:
    """Per channel, with every DM summed into one line: a DM's id says nothing to an admin."""
    merged: dict[str, Usage] = {}
    for channel_id, spent in usage.items():
        key = DM_CHANNELS if is_dm(channel_id) else channel_id
        merged[key] = merged.get(key, Usage()) + spent
    return merged


def feedback_words(rated: dict[str, int]) -> str:
    """How the answers were rated, after the usage line ("" when nobody rated any)."""
    good, bad = rated.get("good", 0), rated.get("bad", 0)
    return f" · feedback: {good} :thumbsup: {bad} :thumbsdown:" if good or bad else ""


def permalink(workspace_url: str | None, thread: ThreadKey) -> str | None:
    """A link to the thread built from the workspace's URL (no `chat.getPermalink` per thread)."""
    if not workspace_url or not workspace_url.startswith("https://"):
        return None
    base = f"{workspace_url.rstrip('/')}/archives/{thread.channel_id}"
    return base if thread.is_dm_top_level else f"{base}/p{thread.thread_ts.replace('.', '')}"


def usage_words(usage: Usage, prices: Prices, *, turns: bool = True) -> str:
    if not usage.turns:
        return "nothing used yet" if turns else "nothing"
    words = f"{usage.total_tokens:,} tokens (~{dollars(prices.cost(usage))})"
    if turns:
        words += f" · {usage.turns} answer{'s' if usage.turns != 1 else ''}"
    return "".join([words, *(f" · {part}" for part in web_words(usage))])


def notice_text(notice: Notice, titles: dict[ThreadKey, str]) -> str:
    if notice.thread is not None and notice.thread in titles:
        return f"*{place(notice.thread)}* {titles[notice.thread]}\n{notice.text}"
    return notice.text


def more_threads(count: int, *, capped: bool) -> str:
    more = f"{count}+" if capped else str(count)
    return (
        f"…and {more} older thread{'s' if count != 1 else ''}. To reset one of them, type `!reset` in it"
        " or use `/reset` in its channel."
    )


def empty_state(bot_user_id: str) -> str:
    bot = f"<@{bot_user_id}>" if bot_user_id else "@threadbox"
    return (
        "*You have no threadbox threads yet.*\n"
        f"Mention {bot} with a request in a channel (invite it first with `/invite {bot}`), or send it"
        " a direct message from the *Messages* tab. Claude writes and runs code in a container that"
        " stays with the thread; your threads then show up here, each with its usage and a *Reset* button."
    )
