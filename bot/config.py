"""All configuration, read once from the environment (and `.env`)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from dotenv import find_dotenv, load_dotenv

from storage import TurnLimits

from .budget import Budget, parse_budget
from .usage import Prices, parse_prices

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_CODE_EXECUTION_TOOL = "code_execution_20250825"
DEFAULT_DATABASE_URL = "sqlite:///threadbox.db"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
# The standard context window of current Claude models, in tokens.
DEFAULT_CONTEXT_WINDOW = 200_000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# `.env.example` holds values such as `xapp-...`: a copied, unfilled one must not count as set.
PLACEHOLDER_ENDINGS = ("...", "…")

# Every setting: name, default, meaning (`python -m bot --help` prints this; README has the same).
SETTINGS_HELP: list[tuple[str, str, str]] = [
    ("SLACK_BOT_TOKEN", "required", "bot token, xoxb-…"),
    ("SLACK_SIGNING_SECRET", "required in HTTP mode", "verifies that requests come from Slack"),
    ("SLACK_APP_TOKEN", "unset", "app-level token xapp-…; when set, the bot runs in Socket Mode"),
    ("SLACK_API_URL", DEFAULT_SLACK_API_URL, "Web API base URL (https; GovSlack: https://slack-gov.com/api/)"),
    ("ANTHROPIC_API_KEY", "required", "Anthropic API key"),
    ("ANTHROPIC_BASE_URL", "SDK default", "API endpoint, read by the anthropic SDK itself"),
    ("ANTHROPIC_MODEL", DEFAULT_MODEL, "model for every turn"),
    ("CODE_EXECUTION_TOOL", DEFAULT_CODE_EXECUTION_TOOL, "code execution tool version"),
    ("ANTHROPIC_MAX_TOKENS", "8192", "output limit of one model call"),
    ("SYSTEM_PROMPT", "built in", "replaces the built-in system prompt"),
    ("DATABASE_URL", DEFAULT_DATABASE_URL, "sqlite:///relative/path, sqlite:////absolute/path or postgresql://…"),
    ("PORT", "3000", "HTTP mode port"),
    ("LOG_LEVEL", "INFO", "Python logging level: " + ", ".join(LOG_LEVELS)),
    ("MAX_MESSAGE_CHARS", "20000", "longer messages get an explanation instead of a model call"),
    ("MAX_FILE_MB", "100", "largest file a user can share into a container"),
    ("SLACK_STREAMING", "true", "false posts and edits an ordinary message instead of streaming"),
    ("QUEUE_LEASE_SECONDS", "10", "how long a process holds a thread without renewing"),
    ("QUEUE_POLL_SECONDS", "10", "the slowest a process looks for work it was not told about"),
    ("MAX_CONCURRENT_TURNS", "10", "turns one process runs at once (in different threads)"),
    ("MAX_TURNS_PER_PERSON", "3", "turns one person may have running at once, over every process (none: no cap)"),
    ("MAX_TURNS_OVERALL", "none", "turns running at once over every process sharing the database"),
    ("SHUTDOWN_GRACE_SECONDS", "20", "on SIGTERM, how long running turns may finish"),
    ("ALLOWED_CHANNELS", "everyone", "channel ids where the bot answers (DMs are not limited by it)"),
    ("ALLOWED_USERS", "everyone", "user ids and user group ids who may use the bot"),
    ("ADMIN_USERS", "none", "user ids always allowed, exempt from budgets, who see the totals on the Home tab"),
    ("ALLOW_GUESTS", "false", "let guests (restricted accounts) use the bot"),
    ("ALLOW_EXTERNAL_USERS", "false", "let Slack Connect people from other organisations use the bot"),
    ("RETENTION_DAYS", "30", "a thread idle this long loses its files and stored history"),
    ("MAINTENANCE_INTERVAL_SECONDS", "3600", "how often pruning and retention run"),
    ("FOLLOW_UPS", "all", "mention: in busy threads only messages that mention the bot start a turn"),
    ("LOG_FORMAT", "text", "json: one JSON object per log line"),
    ("TURN_TIMEOUT_MINUTES", "15", "a turn running longer is stopped, with a message in the thread"),
    ("FILE_TIMEOUT_SECONDS", "60", "a file transfer that makes no progress this long is given up"),
    ("MAX_OUTPUT_FILES", "10", "more files than this from one turn arrive as one zip with a listing"),
    ("CONTEXT_WINDOW_TOKENS", "200000", "the model's context window; older code output is left out to stay inside it"),
    ("SHOW_USAGE", "false", "true adds the turn's tokens and estimated cost to the reply's closing line"),
    ("USAGE_PRICES", "input=3,cache_write=3.75,cache_read=0.30,output=15", "US dollars per million tokens"),
    ("USER_DAILY_BUDGET", "none", "per person and UTC day: tokens (500000) or estimated dollars ($5)"),
    ("WORKSPACE_DAILY_BUDGET", "none", "per workspace and UTC day: tokens or estimated dollars"),
]


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
    turn_limits: TurnLimits = TurnLimits(per_person=3)
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
    turn_timeout_seconds: float = 15 * 60
    file_timeout_seconds: float = 60
    max_output_files: int = 10
    placeholders: tuple[str, ...] = ()
    """Settings that still held a `.env.example` placeholder, and so count as unset."""
    context_window: int = DEFAULT_CONTEXT_WINDOW
    show_usage: bool = False
    prices: Prices = Prices()
    user_daily_budget: Budget | None = None
    workspace_daily_budget: Budget | None = None

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)


def load_settings(env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Read settings from `env` (default: the process environment, after loading `.env`).

    `ANTHROPIC_BASE_URL` is not read here: the anthropic SDK reads it itself.
    """
    if env is None:
        if dotenv:  # the `.env` of the directory the bot is started in (or above it)
            load_dotenv(find_dotenv(usecwd=True), override=False)
        env = os.environ
    placeholders = tuple(
        name for name, _, _ in SETTINGS_HELP if env.get(name, "").strip().endswith(PLACEHOLDER_ENDINGS)
    )

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name, "").strip()
        if name in placeholders:
            value = ""
        return value or default

    required = ["SLACK_BOT_TOKEN", "ANTHROPIC_API_KEY"]
    app_token = get("SLACK_APP_TOKEN")
    if not app_token:
        required.append("SLACK_SIGNING_SECRET")
    missing = [name for name in required if not get(name)]
    if missing:
        unfilled = f"; still the .env.example placeholder: {', '.join(placeholders)}" if placeholders else ""
        raise ConfigError(f"missing required setting(s): {', '.join(missing)} (see .env.example){unfilled}")
    if app_token and not app_token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")

    log_level = (get("LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    port = _whole(get("PORT", "3000"), "PORT")
    if port > 65535:
        raise ConfigError(f"PORT must be at most 65535, got {port}")

    return Settings(
        slack_bot_token=get("SLACK_BOT_TOKEN") or "",
        slack_signing_secret=get("SLACK_SIGNING_SECRET") or "",
        slack_app_token=app_token,
        slack_api_url=_slack_api_url(get("SLACK_API_URL", DEFAULT_SLACK_API_URL) or DEFAULT_SLACK_API_URL),
        anthropic_api_key=get("ANTHROPIC_API_KEY") or "",
        anthropic_model=get("ANTHROPIC_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL,
        code_execution_tool=get("CODE_EXECUTION_TOOL", DEFAULT_CODE_EXECUTION_TOOL)
        or DEFAULT_CODE_EXECUTION_TOOL,
        max_tokens=_whole(get("ANTHROPIC_MAX_TOKENS", "8192"), "ANTHROPIC_MAX_TOKENS"),
        database_url=get("DATABASE_URL", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
        port=port,
        log_level=log_level,
        max_message_chars=_whole(get("MAX_MESSAGE_CHARS", "20000"), "MAX_MESSAGE_CHARS"),
        max_file_bytes=_whole(get("MAX_FILE_MB", "100"), "MAX_FILE_MB") * 1024 * 1024,
        slack_streaming=_bool(get("SLACK_STREAMING", "true"), "SLACK_STREAMING"),
        system_prompt=get("SYSTEM_PROMPT"),
        queue_lease_seconds=_positive(get("QUEUE_LEASE_SECONDS", "10"), "QUEUE_LEASE_SECONDS"),
        queue_poll_seconds=_positive(get("QUEUE_POLL_SECONDS", "10"), "QUEUE_POLL_SECONDS"),
        max_concurrent_turns=_whole(get("MAX_CONCURRENT_TURNS", "10"), "MAX_CONCURRENT_TURNS"),
        turn_limits=TurnLimits(
            per_person=_cap(get("MAX_TURNS_PER_PERSON", "3"), "MAX_TURNS_PER_PERSON"),
            overall=_cap(get("MAX_TURNS_OVERALL", "none"), "MAX_TURNS_OVERALL"),
        ),
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
        turn_timeout_seconds=_whole(get("TURN_TIMEOUT_MINUTES", "15"), "TURN_TIMEOUT_MINUTES") * 60.0,
        file_timeout_seconds=_positive(get("FILE_TIMEOUT_SECONDS", "60"), "FILE_TIMEOUT_SECONDS"),
        max_output_files=_whole(get("MAX_OUTPUT_FILES", "10"), "MAX_OUTPUT_FILES"),
        placeholders=placeholders,
        context_window=_whole(get("CONTEXT_WINDOW_TOKENS", str(DEFAULT_CONTEXT_WINDOW)), "CONTEXT_WINDOW_TOKENS"),
        show_usage=_bool(get("SHOW_USAGE", "false"), "SHOW_USAGE"),
        prices=_prices(get("USAGE_PRICES", "")),
        user_daily_budget=_budget(get("USER_DAILY_BUDGET", ""), "USER_DAILY_BUDGET"),
        workspace_daily_budget=_budget(get("WORKSPACE_DAILY_BUDGET", ""), "WORKSPACE_DAILY_BUDGET"),
    )


def settings_help() -> str:
    """The settings table for `python -m bot --help`."""
    width = max(len(name) for name, _, _ in SETTINGS_HELP)
    lines = ["settings (environment or .env; the environment wins):"]
    lines += [f"  {name:<{width}}  {meaning} (default: {default})" for name, default, meaning in SETTINGS_HELP]
    return "\n".join(lines)


def _slack_api_url(url: str) -> str:
    """https only: the bot token travels with every call (plain http only to this machine)."""
    parsed = urlparse(url)
    if parsed.scheme != "https" and not (parsed.scheme == "http" and _is_loopback(parsed.hostname or "")):
        raise ConfigError(f"SLACK_API_URL must be an https:// URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cap(value: str | None, name: str) -> int | None:
    """A whole number, or `none` (or empty) for no cap."""
    if (value or "").strip().lower() in ("", "none"):
        return None
    return _whole(value, name)


def _whole(value: str | None, name: str) -> int:
    try:
        number = int(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than zero, got {number}")
    return number


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


def _budget(value: str | None, name: str) -> Budget | None:
    try:
        return parse_budget(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number of tokens (500000) or dollars ($5), got {value!r}") from None


def _positive(value: str | None, name: str) -> float:
    try:
        number = float(value or "")
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name} must be greater than zero, got {value}")
    return number


def _prices(value: str | None) -> Prices:
    try:
        return parse_prices(value or "")
    except ValueError as error:
        raise ConfigError(f"USAGE_PRICES: {error}") from None


def _bool(value: str | None, name: str) -> bool:
    lowered = (value or "").lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
