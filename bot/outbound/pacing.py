"""Slack's rate limits, kept before they are hit.

Slack limits each Web API method per workspace and per app (Tier 2 about 20 calls a minute,
Tier 3 about 50, Tier 4 about 100; `chat.postMessage` about one a second in each channel). Every
answer running in a workspace shares that budget, so the pacing is the workspace's client's:
each call waits for room in its method's minute, and a busy workspace slows its updates
instead of collecting 429s. Processes sharing a database split each budget between the ones
working in that workspace (a fair share each). The SDK's retry on 429 stays as the backstop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

# Calls a minute, per method, per workspace (docs.slack.dev/apis/web-api/rate-limits).
TIER_2, TIER_3, TIER_4 = 20, 50, 100
METHOD_TIERS = {
    "chat.startStream": TIER_2,
    "chat.stopStream": TIER_2,
    "chat.appendStream": TIER_4,
    "chat.update": TIER_3,
    "chat.delete": TIER_3,
    "chat.postEphemeral": TIER_4,
    "reactions.add": TIER_3,
    "reactions.remove": TIER_3,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "files.info": TIER_4,
    "conversations.replies": TIER_3,
    "conversations.history": TIER_3,
    "conversations.info": TIER_3,
    "conversations.members": TIER_4,
    "users.info": TIER_4,
    "users.list": TIER_2,
    "views.publish": TIER_4,
    "views.open": TIER_4,
    "assistant.threads.setStatus": TIER_3,
    "assistant.threads.setTitle": TIER_3,
    "assistant.threads.setSuggestedPrompts": TIER_3,
    "agents.sessions.setStatus": TIER_3,
}
POST_MESSAGE_PER_CHANNEL = 60
"""`chat.postMessage`: about one a second in each channel."""
# The window Slack counts calls over, and the share of each limit used (Slack's tiers are
# approximate: "about" 20, 50, 100 a minute).
MINUTE_SECONDS = 60.0
HEADROOM = 0.9
# How often the number of processes sharing the workspace is asked again.
SHARE_SECONDS = 15.0
# A place reserved for a later call (`SlackPacer.reserve`) that its reply never gave back is
# freed after this long (the longest a turn may run is 15 minutes by default).
RESERVATION_SECONDS = 1200.0

ProcessCount = Callable[[], Awaitable[int]]


class Slot:
    """One call's place in its minute: in the minute while it is in flight, and counted from
    when its answer came back (Slack saw it no later than that, however slow the way there)."""

    def __init__(self) -> None:
        self.at = math.inf
        self.taken = time.monotonic()

    def done(self) -> None:
        self.at = time.monotonic()

    def counts(self, now: float) -> bool:
        """Still in the minute: answered less than a minute ago, or in flight (or reserved)
        for less than `RESERVATION_SECONDS`."""
        if self.at == math.inf:
            return now - self.taken < RESERVATION_SECONDS
        return now - self.at < MINUTE_SECONDS


class CallWindow:
    """At most `per_minute` calls in any minute, as Slack counts them: a burst goes at once,
    and a call past the limit waits until the oldest in the minute has left it."""

    def __init__(self) -> None:
        self._slots: deque[Slot] = deque()
        self._lock = asyncio.Lock()  # first come, first served

    def _in_minute(self) -> int:
        now = time.monotonic()
        self._slots = deque(slot for slot in self._slots if slot.counts(now))
        return len(self._slots)

    def has_room(self, per_minute: float) -> bool:
        """Whether a call now would go at once (nobody waiting, and a place in the minute)."""
        return not self._lock.locked() and self._in_minute() < max(1, int(per_minute * HEADROOM))

    def try_take(self, per_minute: float) -> Slot | None:
        """A place in the minute now, or None (never waits)."""
        if not self.has_room(per_minute):
            return None
        slot = Slot()
        self._slots.append(slot)
        return slot

    def give_back(self, slot: Slot) -> None:
        self._slots = deque(s for s in self._slots if s is not slot)

    async def take(self, per_minute: float) -> tuple[Slot, float]:
        """Wait for room in the minute; the call's slot, and how long it waited."""
        limit = max(1, int(per_minute * HEADROOM))
        waited = 0.0
        async with self._lock:
            while True:
                if self._in_minute() < limit:
                    slot = Slot()
                    self._slots.append(slot)
                    return slot, waited
                now = time.monotonic()
                answered = [slot.at for slot in self._slots if slot.at != math.inf]
                pause = min(answered) + MINUTE_SECONDS - now if answered else MINUTE_SECONDS / 100
                await asyncio.sleep(pause)
                waited += pause


class Reservation:
    """Places in their minutes taken ahead for one reply's later calls; what it did not use
    goes back with `release`."""

    def __init__(self) -> None:
        self.places: dict[tuple[str, str], tuple[CallWindow, Slot]] = {}

    def use(self, key: tuple[str, str]) -> Slot | None:
        window_slot = self.places.pop(key, None)
        if window_slot is None:
            return None
        window_slot[1].taken = time.monotonic()
        return window_slot[1]

    def release(self) -> None:
        for window, slot in self.places.values():
            window.give_back(slot)
        self.places.clear()


RESERVED: ContextVar[Reservation | None] = ContextVar("threadbox_reserved", default=None)
"""The reservation of the reply whose calls are being made."""


class SlackPacer:
    """One workspace's call windows: one per tiered method, one per channel for `chat.postMessage`."""

    def __init__(
        self, processes: ProcessCount | None = None, on_wait: Callable[[str, float], None] | None = None
    ) -> None:
        """`processes`: how many processes share this workspace's budget (one when unset);
        `on_wait`: told each time a call had to wait (method, seconds), for the metrics."""
        self._processes = processes
        self._on_wait = on_wait
        self._share = 1
        self._share_at = 0.0
        self._windows: dict[tuple[str, str], CallWindow] = {}

    def has_room(self, method: str, args: dict[str, Any] | None = None) -> bool:
        """Whether `method` would be called at once now: what a call that is worth making only
        without a wait (a status line, a progress edit, a stream in a busy minute) asks first."""
        budget = self._budget(method, args)
        if budget is None:
            return True
        key, per_minute = budget
        window = self._windows.get(key)
        return window is None or window.has_room(per_minute / self._share)

    async def reserve(self, *methods: str) -> Reservation | None:
        """Take a place now for a later call of each of `methods` (a stream's start, and its
        stop when it ends), or for none of them: None when one has no room this minute. Calls
        made while the reservation is `RESERVED` use its places without waiting."""
        share = await self._current_share()
        reservation = Reservation()
        for method in methods:
            budget = self._budget(method, None)
            if budget is None:
                continue
            key, per_minute = budget
            window = self._windows.setdefault(key, CallWindow())
            slot = window.try_take(per_minute / share)
            if slot is None:
                reservation.release()
                return None
            reservation.places[key] = (window, slot)
        return reservation

    async def wait(self, method: str, args: dict[str, Any] | None) -> Slot | None:
        """Return once `method` may be called without passing this process's share of the
        budget: the call's slot, to mark `done()` when its answer is back (None: not paced)."""
        budget = self._budget(method, args)
        if budget is None:
            return None
        key, per_minute = budget
        reservation = RESERVED.get()
        if reservation is not None and (slot := reservation.use(key)) is not None:
            return slot  # a place taken for this call: it goes at once
        share = await self._current_share()
        window = self._windows.setdefault(key, CallWindow())
        slot, waited = await window.take(per_minute / share)
        if waited and self._on_wait is not None:
            self._on_wait(method, waited)
        return slot

    @staticmethod
    def _budget(method: str, args: dict[str, Any] | None) -> tuple[tuple[str, str], int] | None:
        """The window a call counts in, and its calls a minute; None for a method not paced."""
        if method == "chat.postMessage":
            return (method, str((args or {}).get("channel", ""))), POST_MESSAGE_PER_CHANNEL
        if method in METHOD_TIERS:
            return (method, ""), METHOD_TIERS[method]
        return None

    async def _current_share(self) -> int:
        if self._processes is not None and time.monotonic() - self._share_at >= SHARE_SECONDS:
            self._share_at = time.monotonic()
            try:
                self._share = max(1, await self._processes())
            except Exception:  # noqa: BLE001 - the database away for a moment: keep the last share
                pass
        return self._share


class PacedWebClient(AsyncWebClient):
    """The SDK's client, each Web API call first waiting for its workspace's rate budget."""

    def __init__(self, *, pacer: SlackPacer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pacer = pacer

    async def api_call(  # type: ignore[override]
        self, api_method: str, *, params: dict[str, Any] | None = None, json: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None, **kwargs: Any,
    ) -> AsyncSlackResponse:
        args = json if json is not None else data if isinstance(data, dict) else params
        slot = await self.pacer.wait(api_method, args)
        try:
            response = await super().api_call(api_method, params=params, json=json, data=data, **kwargs)
        finally:
            if slot is not None:
                slot.done()
        assert isinstance(response, AsyncSlackResponse)
        return response


def has_room(client: AsyncWebClient, method: str, args: dict[str, Any] | None = None) -> bool:
    """`SlackPacer.has_room` for a client that is paced; any other client always has room."""
    return not isinstance(client, PacedWebClient) or client.pacer.has_room(method, args)


async def reserve(client: AsyncWebClient, *methods: str) -> Reservation | None:
    """`SlackPacer.reserve` for a client that is paced; any other client always has room."""
    return await client.pacer.reserve(*methods) if isinstance(client, PacedWebClient) else Reservation()
