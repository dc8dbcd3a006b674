"""All configuration, read once from the environment (and `.env`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dotenv import load_dotenv

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_CODE_EXECUTION_TOOL = "code_execution_20250825"
DEFAULT_DATABASE_URL = "sqlite:///threadbox.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line meant for the operator."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    slack_signing_secret: str
    slack_app_token: str | None
    slack_api_url: str
    anthropic_api_key: str
    anthropic_model: str
    code_execution_tool: str
    max_tokens: int
    database_url: str
    port: int
    log_level: str
    max_message_chars: int
    max_file_bytes: int
    slack_streaming: bool
    system_prompt: str | None
    queue_lease_seconds: float = 10.0
    queue_poll_seconds: float = 10.0
    max_concurrent_turns: int = 10
    shutdown_grace_seconds: float = 20.0
    allowed_channels: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    admin_users: frozenset[str] = frozenset()
    allow_guests: bool = False
    allow_external_users: bool = False
    retention_days: float = 30.0
    maintenance_interval_seconds: float = 3600.0
    log_format: str = "text"
    follow_ups: str = "all"

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)


def load_settings(env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Read settings from `env` (default: the process environment, after loading `.env`).

    `ANTHROPIC_BASE_URL` is not read here: the anthropic SDK reads it itself.
    """
    if env is None:
        if dotenv:
            load_dotenv(override=False)
        env = os.environ

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name, "").strip()
        return value or default

    required = ["SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY"]
    app_token = get("SLACK_APP_TOKEN")
    if not app_token:
        required.append("SLACK_SIGNING_SECRET")
    missing = [name for name in required if not get(name)]
    if missing:
        raise ConfigError(f"missing required setting(s): {', '.join(missing)} (see .env.example)")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")

    slack_api_url = get("SLACK_API_URL", DEFAULT_SLACK_API_URL) or DEFAULT_SLACK_API_URL
    if not slack_api_url.endswith("/"):
        slack_api_url += "/"

    return Settings(
        slack_bot_token=get("SLACK_BOT_TOKEN") or "",
        slack_signing_secret=get("SLACK_SIGNING_SECRET") or "",
        slack_app_token=app_token,
        slack_api_url=slack_api_url,
        anthropic_api_key=get("ANTHROPIC_API_KEY") or "",
        anthropic_model=get("ANTHROPIC_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL,
        code_execution_tool=get("CODE_EXECUTION_TOOL", DEFAULT_CODE_EXECUTION_TOOL)
        or DEFAULT_CODE_EXECUTION_TOOL,
        max_tokens=_int(get("ANTHROPIC_MAX_TOKENS", "8192"), "ANTHROPIC_MAX_TOKENS"),
        database_url=get("DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
        port=_int(get("PORT", "3000"), "PORT"),
        log_level=(get("LOG_LEVEL", "INFO") or "INFO").upper(),
        max_message_chars=_int(get("MAX_MESSAGE_CHARS", "20000"), "MAX_MESSAGE_CHARS"),
        max_file_bytes=_int(get("MAX_FILE_MB", "100"), "MAX_FILE_MB") * 1024 * 1024,
        slack_streaming=_bool(get("SLACK_STREAMING", "true"), "SLACK_STREAMING"),
        system_prompt=get("SYSTEM_PROMPT"),
        queue_lease_seconds=_positive(get("QUEUE_LEASE_SECONDS", "10"), "QUEUE_LEASE_SECONDS"),
        queue_poll_seconds=_positive(get("QUEUE_POLL_SECONDS", "10"), "QUEUE_POLL_SECONDS"),
        max_concurrent_turns=_int(get("MAX_CONCURRENT_TURNS", "10"), "MAX_CONCURRENT_TURNS"),
        shutdown_grace_seconds=_positive(get("SHUTDOWN_GRACE_SECONDS", "20"), "SHUTDOWN_GRACE_SECONDS"),
        allowed_channels=_ids(get("ALLOWED_CHANNELS"), "ALLOWED_CHANNELS", "CGD"),
        allowed_users=_ids(get("ALLOWED_USERS"), "ALLOWED_USERS", "UWS"),
        admin_users=_ids(get("ADMIN_USERS"), "ADMIN_USERS", "UW"),
        allow_guests=_bool(get("ALLOW_GUESTS", "false"), "ALLOW_GUESTS"),
        allow_external_users=_bool(get("ALLOW_EXTERNAL_USERS", "false"), "ALLOW_EXTERNAL_USERS"),
        retention_days=_positive(get("RETENTION_DAYS", "30"), "RETENTION_DAYS"),
        maintenance_interval_seconds=_positive(
            get("MAINTENANCE_INTERVAL_SECONDS", "3600"), "MAINTENANCE_INTERVAL_SECONDS"
        ),
        log_format=_choice(get("LOG_FORMAT", "text"), "LOG_FORMAT", ("text", "json")),
        follow_ups=_choice(get("FOLLOW_UPS", "all"), "FOLLOW_UPS", ("all", "mention")),
    )


def _int(value: str | None, name: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None


def _ids(value: str | None, name: str, prefixes: str) -> frozenset[str]:
    """A comma- or space-separated list of Slack ids, each starting with one of `prefixes`."""
    ids = frozenset((value or "").replace(",", " ").split())
    wrong = sorted(i for i in ids if not i[:1] in prefixes or not i.isalnum() or i.upper() != i)
    if wrong:
        raise ConfigError(f"{name} takes Slack ids starting with {'/'.join(prefixes)}, got {', '.join(wrong)}")
    return ids


def _choice(value: str | None, name: str, choices: tuple[str, ...]) -> str:
    lowered = (value or "").lower()
    if lowered not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return lowered


def _positive(value: str | None, name: str) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be more than 0, got {value!r}")
    return number


def _bool(value: str | None, name: str) -> bool:
    lowered = (value or "").lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
