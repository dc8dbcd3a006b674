"""Reading setting values: each parser gives a typed value or a `ConfigError` naming the setting."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

from .channels.keys import FollowUps
from .errors import ConfigError
from .policy.budgets import Budget, parse_budget
from .policy.usage import Prices, parse_prices

N = TypeVar("N", int, float)


CHANNEL_IDS = "CGD"
"""Channels, private channels and DMs."""
PERSON_OR_GROUP_IDS = "UWS"
"""People (W… on Enterprise Grid) and user groups."""
PERSON_IDS = "UW"

def slack_api_url(url: str, name: str) -> str:
    """https only: the bot token travels with every call (plain http only to this machine)."""
    parsed = urlparse(url)
    if parsed.scheme != "https" and not (parsed.scheme == "http" and _is_loopback(parsed.hostname or "")):
        raise ConfigError(f"{name} must be an https:// URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cap(value: str | None, name: str) -> int | None:
    """A whole number, or `none` (or empty) for no cap."""
    if (value or "").strip().lower() in ("", "none"):
        return None
    return whole_number(value, name)


def whole_number(value: str | None, name: str) -> int:
    return _above_zero(value, name, int, "a whole number")


def is_slack_id(value: str, prefixes: str) -> bool:
    """`C0123ABCD`: upper-case letters and digits, starting with one of `prefixes`."""
    return value[:1] in prefixes and value.isalnum() and value.upper() == value


def slack_ids_problem(ids: frozenset[str], prefixes: str) -> str | None:
    """What is wrong with a list of Slack ids that should each start with one of `prefixes`."""
    wrong = sorted(i for i in ids if not is_slack_id(i, prefixes))
    return f"takes Slack ids starting with {'/'.join(prefixes)}, got {', '.join(wrong)}" if wrong else None


def slack_ids(value: str | None, name: str, prefixes: str) -> frozenset[str]:
    """A comma- or space-separated list of Slack ids, each starting with one of `prefixes`."""
    ids = frozenset((value or "").replace(",", " ").split())
    problem = slack_ids_problem(ids, prefixes)
    if problem:
        raise ConfigError(f"{name} {problem}")
    return ids


def choice(value: str | None, name: str, choices: tuple[str, ...]) -> str:
    lowered = (value or "").lower()
    if lowered not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return lowered


def budget(value: str | None, name: str) -> Budget | None:
    try:
        return parse_budget(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number of tokens (500000) or dollars ($5), got {value!r}") from None


def optional_whole_number(value: str | None, name: str) -> int | None:
    """A whole number, or None when unset."""
    return whole_number(value, name) if value else None


def positive(value: str | None, name: str) -> float:
    return _above_zero(value, name, float, "a number of seconds")


def _above_zero(value: str | None, name: str, kind: Callable[[str], N], what: str) -> N:
    try:
        number = kind(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than zero, got {value}")
    return number


def prices(value: str, name: str, base: Prices) -> Prices:
    """The `base` prices, with those `value` names in their place."""
    try:
        return parse_prices(value, base)
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None


def follow_ups(value: str, name: str) -> FollowUps:
    return "mention" if choice(value, name, ("all", "mention")) == "mention" else "all"


def skill_names(value: str | None, name: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """`xlsx,pdf` -> those skills in that order; `none` -> none."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in (value or "").split(",") if part.strip()))
    if names in ((), ("none",)):
        return ()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{name}: unknown skill(s) {', '.join(unknown)} (use {', '.join(known)}, or none)")
    return names


_DOMAIN = re.compile(r"^(?!-)[a-z0-9-]+(\.[a-z0-9-]+)+$")


def domains(value: str | None, name: str) -> tuple[str, ...]:
    """`example.com, docs.python.org` -> those domains (lowercase, no scheme or path)."""
    found = tuple(part.strip().lower() for part in (value or "").split(",") if part.strip())
    bad = [d for d in found if not _DOMAIN.match(d)]
    if bad:
        raise ConfigError(f"{name}: not a domain: {', '.join(bad)} (write example.com, without https:// or a path)")
    return found


def boolean(value: str | None, name: str) -> bool:
    lowered = (value or "").lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
