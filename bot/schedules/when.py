"""When a schedule runs: the forms `!schedule` accepts, read into a rule, and the rule's next
occurrence after a moment, in the scheduling person's time zone (daylight-saving changes
included). The calendar arithmetic is croniter's."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FORMS = (
    "`every day at HH:MM`, `every weekday at HH:MM`, `every monday at HH:MM` (any day of the week),"
    " `every N minutes`, `every N hours`, `at HH:MM` or `at YYYY-MM-DD HH:MM` (once), or"
    ' `cron "<minute hour day month weekday>"`'
)
_TIME = r"(?P<hour>\d{1,2}):(?P<minute>\d{2})"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("day", re.compile(rf"every\s+day\s+at\s+{_TIME}\s+(?P<rest>.+)", re.I | re.S)),
    ("weekday", re.compile(rf"every\s+weekday\s+at\s+{_TIME}\s+(?P<rest>.+)", re.I | re.S)),
    ("dow", re.compile(rf"every\s+(?P<dow>{'|'.join(DAYS)})\s+at\s+{_TIME}\s+(?P<rest>.+)", re.I | re.S)),
    ("every", re.compile(r"every\s+(?P<n>\d+)\s+(?P<unit>minutes?|hours?)\s+(?P<rest>.+)", re.I | re.S)),
    ("date", re.compile(rf"at\s+(?P<date>\d{{4}}-\d{{2}}-\d{{2}})\s+{_TIME}\s+(?P<rest>.+)", re.I | re.S)),
    ("at", re.compile(rf"at\s+{_TIME}\s+(?P<rest>.+)", re.I | re.S)),
    ("cron", re.compile(r"cron\s+[\"“”](?P<expr>[^\"“”]+)[\"“”]\s+(?P<rest>.+)", re.I | re.S)),
)


class WhenError(ValueError):
    """Words for the person: what is wrong with the schedule they wrote."""


@dataclass(frozen=True)
class Rule:
    """`cron` (an expression), `every` (seconds between runs) or `once` (epoch seconds)."""

    kind: str
    spec: str
    tz: str
    said: str
    """The form as the person wrote it, for listings."""

    def next_after(self, moment: float) -> float | None:
        """The first occurrence strictly after `moment` (None: a one-time rule that has run)."""
        if self.kind == "once":
            at = float(self.spec)
            return at if at > moment else None
        if self.kind == "every":
            raise ValueError("an `every` rule runs from its previous occurrence: use `following`")
        start = datetime.fromtimestamp(moment, ZoneInfo(self.tz))
        return float(croniter(self.spec, start).get_next(float))

    def first(self, now: float) -> float:
        if self.kind == "every":
            return now + float(self.spec)
        first = self.next_after(now)
        if first is None:
            raise WhenError("that time has already passed")
        return first

    def following(self, due: float, now: float) -> float | None:
        """The occurrence after `due`, never one already past at `now`: occurrences missed
        while no process ran are run once, not once each."""
        if self.kind == "once":
            return None
        if self.kind == "every":
            step = float(self.spec)
            return due + step * max(1, math.floor((now - due) / step) + 1)
        return self.next_after(max(due, now))

    def shortest_gap(self, now: float, samples: int = 48) -> float | None:
        """The shortest time between two runs (None: it runs once)."""
        if self.kind == "once":
            return None
        if self.kind == "every":
            return float(self.spec)
        moments = [now]
        for _ in range(samples):
            following = self.next_after(moments[-1])
            assert following is not None
            moments.append(following)
        return min(b - a for a, b in zip(moments[1:], moments[2:], strict=False))


def zone(tz: str | None) -> str:
    """The person's Slack time zone if Python knows it, else UTC."""
    try:
        ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return tz or "UTC"


def read_schedule(text: str, tz: str, now: float) -> tuple[Rule, str]:
    """The rule and the request of `<when> <request>`; `WhenError` names what is wrong."""
    text = text.strip()
    for form, pattern in _PATTERNS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        request = match["rest"].strip()
        said = text[: match.start("rest")].strip()
        return _rule(form, match, tz, now, said), request
    raise WhenError(f"I couldn't read when to run that. Write `!schedule <when> <request>`, <when> being {FORMS}.")


def _rule(form: str, match: re.Match[str], tz: str, now: float, said: str) -> Rule:
    if form == "every":
        n = int(match["n"])
        if n < 1:
            raise WhenError("the interval must be at least 1")
        seconds = n * (3600 if match["unit"].lower().startswith("hour") else 60)
        return Rule("every", str(seconds), tz, said)
    if form == "cron":
        expression = " ".join(match["expr"].split())
        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            raise WhenError(f"`{expression}` is not a 5-field cron expression (minute hour day month weekday)")
        return Rule("cron", expression, tz, said)
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise WhenError(f"{match['hour']}:{match['minute']} is not a time of day")
    if form == "day":
        return Rule("cron", f"{minute} {hour} * * *", tz, said)
    if form == "weekday":
        return Rule("cron", f"{minute} {hour} * * 1-5", tz, said)
    if form == "dow":
        return Rule("cron", f"{minute} {hour} * * {(DAYS.index(match['dow'].lower()) + 1) % 7}", tz, said)
    local = datetime.fromtimestamp(now, ZoneInfo(tz))
    if form == "date":
        try:
            day = datetime.strptime(match["date"], "%Y-%m-%d").date()
        except ValueError:
            raise WhenError(f"{match['date']} is not a date") from None
        at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz))
    else:
        at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if at.timestamp() <= now:
            at += timedelta(days=1)
    if at.timestamp() <= now:
        raise WhenError("that time has already passed")
    return Rule("once", f"{at.timestamp():.0f}", tz, said)


def local_time(moment: float, tz: str) -> str:
    """`Wed 2 Dec 09:00 CET`: a moment in the person's zone."""
    at = datetime.fromtimestamp(moment, ZoneInfo(tz))
    return f"{at:%a} {at.day} {at:%b %H:%M} {at.tzname()}"
