"""How threadbox meets Slack: the one bot token's workspace, or every workspace that installs
the app by OAuth; the Web API clients they use and the policies they apply.

Part of the composition root (`app.py` calls it once): nothing else builds a Slack client.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from storage import Store

from .channels.book import ChannelSettingsBook
from .config import Settings
from .errors import StartupError, slack_error
from .installs.oauth import oauth_settings
from .installs.rotation import OneRefreshAtATime
from .installs.store import SlackInstallations
from .installs.workspaces import InstalledWorkspaces
from .ops.metrics import Metrics
from .outbound.pacing import PacedWebClient, SlackPacer
from .policy.access import AccessPolicy
from .policy.budgets import DailyBudgets
from .policy.rules import WorkspacePolicies
from .workspaces import SingleWorkspace, WorkspaceResolver


def slack_client(settings: Settings, metrics: Metrics, store: Store, token: str | None) -> AsyncWebClient:
    """A Web API client of one token (one workspace's; None: the app's own calls, such as the
    install flow's): paced within the workspace's rate budget (shared with the other processes
    working there), the SDK's retries, and every error counted."""
    return PacedWebClient(
        pacer=SlackPacer(store.live_processes, on_wait=metrics.slack_waited),
        token=token,
        base_url=settings.slack_api_url,
        retry_handlers=[
            metrics.slack_error_counter(),  # first: it sees every answer, and never retries
            AsyncConnectionErrorRetryHandler(),
            AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def workspace_policies(settings: Settings, channels: ChannelSettingsBook) -> WorkspacePolicies:
    """The process's access policy and budgets, under what the settings file sets for every
    workspace or for one (read as the file is now)."""
    file = channels.file
    return WorkspacePolicies(
        access_policy(settings),
        DailyBudgets(settings.user_daily_budget, settings.workspace_daily_budget),
        (lambda team_id: file.current.rules_for(team_id)) if file is not None else None,
    )


def access_policy(settings: Settings) -> AccessPolicy:
    return AccessPolicy(
        allowed_channels=settings.allowed_channels,
        allowed_users=settings.allowed_users,
        admin_users=settings.admin_users,
        allow_guests=settings.allow_guests,
        allow_external=settings.allow_external_users,
        members_change_settings=settings.channel_settings_by == "members",
    )


@dataclass(frozen=True)
class SlackSide:
    """How threadbox meets Slack: one bot token's workspace, or every install of the OAuth flow."""

    workspaces: WorkspaceResolver
    client: AsyncWebClient
    """The bot token's client, or (OAuth) the app's own, with no token."""
    oauth: AsyncOAuthSettings | None = None
    installations: SlackInstallations | None = None


async def slack_side(
    settings: Settings, metrics: Metrics, store: Store, channels: ChannelSettingsBook, policies: WorkspacePolicies
) -> SlackSide:
    """With SLACK_BOT_TOKEN, its one workspace (identified now: a refusal stops start-up);
    with SLACK_CLIENT_ID and SLACK_CLIENT_SECRET, every workspace that installs the app."""
    if not settings.oauth:
        client = slack_client(settings, metrics, store, settings.slack_bot_token)
        single = SingleWorkspace(client, policies.access, channels)
        await identify(single, settings)
        return SlackSide(single, client)
    client = slack_client(settings, metrics, store, None)
    client_id, client_secret = settings.slack_client_id or "", settings.slack_client_secret or ""
    rotator = OneRefreshAtATime(store=store, client_id=client_id, client_secret=client_secret, client=client)
    oauth = oauth_settings(
        client_id=client_id, client_secret=client_secret, slack_api_url=settings.slack_api_url, store=store,
        client=client, rotator=rotator,
    )
    installed = InstalledWorkspaces(
        store, rotator, lambda token: slack_client(settings, metrics, store, token), policies.access, channels
    )
    installations = oauth.installation_store
    assert isinstance(installations, SlackInstallations)
    return SlackSide(installed, client, oauth, installations)


async def identify(workspaces: SingleWorkspace, settings: Settings) -> None:
    """`auth.test` for the bot token; a refusal or an unreachable Slack is a `StartupError`."""
    try:
        await workspaces.start()
    except SlackApiError as error:
        raise StartupError(
            f"Slack refused SLACK_BOT_TOKEN (auth.test answered {slack_error(error)}): copy the"
            " Bot User OAuth Token (xoxb-…) of the installed app"
        ) from None
    except (SlackRequestError, aiohttp.ClientError, OSError, TimeoutError) as error:
        raise StartupError(
            f"could not reach Slack at {settings.slack_api_url} ({error or type(error).__name__}): check"
            " the network and SLACK_API_URL"
        ) from None
