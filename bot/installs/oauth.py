"""Bolt's install flow (`/slack/install`, `/slack/oauth_redirect`) and authorize, on threadbox's
store, its Slack URL and the manifest's scopes."""

from __future__ import annotations

import logging

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_client import AsyncWebClient

from storage import Store

from .rotation import DEFAULT_MINUTES_BEFORE_EXPIRATION, OneRefreshAtATime
from .scopes import BOT_SCOPES
from .store import SlackInstallations, SlackOAuthStates

logger = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
"""The "Add to Slack" page."""
REDIRECT_PATH = "/slack/oauth_redirect"
"""Where Slack sends the browser back (the app's Redirect URL ends in it)."""
AUTHORIZED_TOKENS_KEPT = 10_000
"""How many tokens' `auth.test` answers Bolt's authorize keeps (rotation retires a token a day)."""
STATE_SECONDS = 600
"""How long an install started on `/slack/install` can be finished (Bolt's default)."""


class RecentFirst(dict[str, AuthorizeResult]):
    """A dict of at most `limit` entries that lets the oldest go first: Bolt's authorize keeps
    one per token it has seen, and rotated tokens are never asked about again."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: str, value: AuthorizeResult) -> None:
        super().__setitem__(key, value)
        while len(self) > self.limit:
            del self[next(iter(self))]


def authorization_url(slack_api_url: str) -> str:
    """Slack's install page beside its Web API (`https://slack.com/api/` ->
    `https://slack.com/oauth/v2/authorize`; GovSlack's likewise)."""
    root = slack_api_url.rstrip("/")
    root = root[: -len("/api")] if root.endswith("/api") else root
    return f"{root}/oauth/v2/authorize"


def oauth_settings(
    *, client_id: str, client_secret: str, slack_api_url: str, store: Store, client: AsyncWebClient,
    rotator: OneRefreshAtATime,
) -> AsyncOAuthSettings:
    """Bot-only installs saved in threadbox's database; each request's token found there by
    Bolt's authorize (cached: `auth.test` once per token) and rotated one refresh at a time."""
    installations = SlackInstallations(store)
    settings = AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        user_scopes=[],
        installation_store=installations,
        installation_store_bot_only=True,
        token_rotation_expiration_minutes=DEFAULT_MINUTES_BEFORE_EXPIRATION,
        state_store=SlackOAuthStates(store, STATE_SECONDS),
        state_expiration_seconds=STATE_SECONDS,
        authorization_url=authorization_url(slack_api_url),
        logger=logger,
    )
    authorize = AsyncInstallationStoreAuthorize(
        logger=logger,
        installation_store=installations,
        client_id=client_id,
        client_secret=client_secret,
        token_rotation_expiration_minutes=DEFAULT_MINUTES_BEFORE_EXPIRATION,
        bot_only=True,
        cache_enabled=True,
        client=client,
    )
    authorize.token_rotator = rotator  # the refreshes of requests and of background work take turns
    authorize.authorize_result_cache = RecentFirst(AUTHORIZED_TOKENS_KEPT)
    settings.authorize = authorize
    return settings
