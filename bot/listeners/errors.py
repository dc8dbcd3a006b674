"""The tolerant error handler: a payload of the wrong shape costs one log line and a 200.

Slack answers a 5xx with retries and counts it against the app, so a malformed request is
never answered with one.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from storage import DATABASE_OUTAGES

from .payloads import payload_kind

logger = logging.getLogger(__name__)

# What Bolt or a listener raises when a payload lacks a field or has the wrong type.
SHAPE_ERRORS = (LookupError, TypeError, AttributeError, ValueError)


async def on_unhandled_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
    """Bolt's error handler. A payload of the wrong shape (which Bolt's own matching or a
    listener tripped on) is answered 200 with one log line; anything else keeps Bolt's
    behaviour: a traceback, and a 500 when it happened before the acknowledgement."""
    if isinstance(error, SHAPE_ERRORS):
        _log_malformed(body, error)
        return BoltResponse(status=200, body="")
    if isinstance(error, DATABASE_OUTAGES):  # answered 500: Slack sends it again
        logger.warning("could not store a %s payload, the database is away (%s)", payload_kind(body), error)
        return None
    logger.error("failed to handle a %s payload", payload_kind(body), exc_info=error)
    return None


class TolerantApp(AsyncApp):
    """Bolt's app, answering 200 to a payload whose shape trips Bolt before any error handler
    can run (e.g. an `event_callback` whose `event` is not an object)."""

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        try:
            return await super().async_dispatch(req)
        except SHAPE_ERRORS as error:
            _log_malformed(req.body, error)
            return BoltResponse(status=200, body="")


def _log_malformed(body: object, error: Exception) -> None:
    kind, reason = payload_kind(body), str(error)[:200]
    logger.warning("ignoring a malformed %s payload (%s: %s)", kind, type(error).__name__, reason)
