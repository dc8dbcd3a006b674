"""Token rotation, one refresh at a time: slack_sdk's `AsyncTokenRotator`, serialised per
install across every process sharing the database.

With rotation on, a bot token lasts 12 hours and its refresh token works once: two processes
(or a request and a background turn) refreshing together would leave one of them holding a
refresh token Slack has revoked. The one that takes the install's refresh lease refreshes and
saves; the others wait for the token it saved.
"""

from __future__ import annotations

import asyncio
import time

from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from storage import Store

from .store import bot_of, install_key, record_of

REFRESH_LEASE_SECONDS = 30.0
"""The longest a refresh may take before another process may try (a stuck one is given up)."""
REFRESH_POLL_SECONDS = 0.1
DEFAULT_MINUTES_BEFORE_EXPIRATION = 120
"""Refresh this long before a token expires (Bolt's default), on whichever path asks first."""


def expiring(bot: Bot, minutes_before_expiration: int) -> bool:
    expires_at = bot.bot_token_expires_at
    return expires_at is not None and expires_at <= time.time() + minutes_before_expiration * 60


class OneRefreshAtATime(AsyncTokenRotator):
    """`AsyncTokenRotator`, whose refresh of an install waits for any other one under way."""

    def __init__(self, *, store: Store, client_id: str, client_secret: str, client: AsyncWebClient) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret, client=client)
        self.store = store

    async def perform_bot_token_rotation(
        self, *, bot: Bot, minutes_before_expiration: int = DEFAULT_MINUTES_BEFORE_EXPIRATION
    ) -> Bot | None:
        """The refreshed bot (saved), or None when the token is good for a while yet."""
        if not expiring(bot, minutes_before_expiration):
            return None
        key = install_key(bot.enterprise_id, bot.team_id, bot.is_enterprise_install)
        deadline = time.monotonic() + 2 * REFRESH_LEASE_SECONDS
        while True:
            found = await self.store.find_installation(key.team_id, key.enterprise_id)
            current = bot_of(found.bot) if found is not None else bot
            if not expiring(current, minutes_before_expiration):
                return current  # refreshed meanwhile, by another process or request
            if found is None or time.monotonic() > deadline:
                break  # not saved (yet), or the refresher seems stuck: try with the refresh token known
            if await self.store.start_token_refresh(found.key, REFRESH_LEASE_SECONDS):
                # Read again under the lease: another refresh may have ended since the read above.
                again = await self.store.find_installation(key.team_id, key.enterprise_id)
                current = bot_of(again.bot) if again is not None else current
                if not expiring(current, minutes_before_expiration):
                    await self.store.end_token_refresh(found.key)
                    return current
                break
            await asyncio.sleep(REFRESH_POLL_SECONDS)
        try:
            refreshed = await super().perform_bot_token_rotation(
                bot=current, minutes_before_expiration=minutes_before_expiration
            )
            if refreshed is not None and found is not None:
                await self.store.save_installation(
                    found.key, org=refreshed.is_enterprise_install, bot=record_of(refreshed)
                )
            return refreshed
        finally:
            if found is not None:
                await self.store.end_token_refresh(found.key)
