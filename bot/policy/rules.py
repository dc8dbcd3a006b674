"""Per-workspace policy: who may use threadbox and what it may spend, workspace by workspace.

The process settings (`ALLOWED_USERS`, `ADMIN_USERS`, `USER_DAILY_BUDGET`…) hold for every
workspace; the settings file's `[defaults]`, then `[workspaces.<team or enterprise id>]`, may
set the same keys for all workspaces or for one (the file is read again on change, so each
request reads the policy as the file leaves it now).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from .. import config_values as values
from ..errors import ConfigError
from .access import AccessPolicy
from .budgets import DailyBudgets, parse_budget

# The file's key, and the `AccessPolicy` field it sets.
ACCESS_KEYS = {
    "allowed_channels": "allowed_channels",
    "allowed_users": "allowed_users",
    "admin_users": "admin_users",
    "allow_guests": "allow_guests",
    "allow_external_users": "allow_external",
}
BUDGET_KEYS = ("user_daily_budget", "workspace_daily_budget")
POLICY_KEYS = (*ACCESS_KEYS, *BUDGET_KEYS)
_ID_PREFIXES = {
    "allowed_channels": values.CHANNEL_IDS, "allowed_users": values.PERSON_OR_GROUP_IDS,
    "admin_users": values.PERSON_IDS,
}

Rules = Mapping[str, Any]
"""What one table sets of the policy keys, parsed (a budget of "none" is None: no budget)."""


def read_rules(table: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The policy keys of a `[defaults]` or `[workspaces.…]` table, and each one's problem."""
    rules: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key in POLICY_KEYS:
        if key not in table:
            continue
        try:
            rules[key] = _read(key, table[key])
        except ConfigError as error:
            problems.append((key, str(error)))
    return rules, problems


def _read(key: str, value: Any) -> Any:
    if key in _ID_PREFIXES:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"a list of Slack ids, got {value!r}")
        problem = values.slack_ids_problem(frozenset(value), _ID_PREFIXES[key])
        if problem:
            raise ConfigError(problem)
        return frozenset(value)
    if key in ("allow_guests", "allow_external_users"):
        if not isinstance(value, bool):
            raise ConfigError(f"true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"a number of tokens (500000), dollars (\"$5\") or \"none\", got {value!r}")
    text = str(value)
    if text.strip().lower() == "none":
        return None
    try:
        return parse_budget(text)
    except ValueError:
        raise ConfigError(f"a number of tokens (500000), dollars (\"$5\") or \"none\", got {value!r}") from None


class WorkspacePolicies:
    """The policy of each workspace: the process's, under the file's `[defaults]` and that
    workspace's table."""

    def __init__(
        self, access: AccessPolicy, budgets: DailyBudgets, rules: Callable[[str], list[Rules]] | None = None
    ) -> None:
        """`rules`: a workspace's tables, lowest first (`[defaults]`, then its own)."""
        self._access = access
        self._budgets = budgets
        self._rules = rules or (lambda _key: [])

    def access(self, team_id: str) -> AccessPolicy:
        changes: dict[str, Any] = {}
        for rules in self._rules(team_id):
            changes.update({ACCESS_KEYS[k]: v for k, v in rules.items() if k in ACCESS_KEYS})
        return replace(self._access, **changes) if changes else self._access

    def budgets(self, team_id: str) -> DailyBudgets:
        per_person, per_workspace = self._budgets.per_person, self._budgets.per_workspace
        for rules in self._rules(team_id):
            per_person = rules.get("user_daily_budget", per_person)
            per_workspace = rules.get("workspace_daily_budget", per_workspace)
        return DailyBudgets(per_person, per_workspace)

