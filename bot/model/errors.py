"""Anthropic API errors in words for the thread, and what an error says about the container."""

from __future__ import annotations

import re

import anthropic

# Words of a 4xx that say the named container itself is gone (not some other problem).
CONTAINER_GONE_WORDS = ("not found", "not_found", "expired", "invalid", "does not exist", "no longer", "unknown")
_NAMES_CONTAINER = re.compile(r"\bcontainers?\b")
# Error types that say the API is busy or broke for a moment (inside a stream, HTTP says 200).
TRANSIENT_ERRORS = ("overloaded_error", "api_error")


def describe_api_error(error: anthropic.APIError) -> str:
    """Words for the thread: what went wrong and what to do about it."""
    request_id = getattr(error, "request_id", None)
    suffix = f" (request id `{request_id}`)" if request_id else ""
    if isinstance(error, anthropic.APITimeoutError):
        return "Claude took too long to answer. Please try again." + suffix
    if isinstance(error, anthropic.APIConnectionError):
        return "I couldn't reach the Claude API. Please try again in a moment."
    if isinstance(error, anthropic.RateLimitError):
        return "Claude is rate limited right now. Please try again in a minute." + suffix
    if isinstance(error, (anthropic.AuthenticationError, anthropic.PermissionDeniedError)):
        return "The Claude API refused this app's credentials; please tell the app's admin." + suffix
    if isinstance(error, anthropic.APIStatusError) and is_transient(error):
        return "Claude is overloaded or having trouble right now. Please try again shortly." + suffix
    if isinstance(error, anthropic.APIStatusError):
        return f"Claude could not handle this request: {api_message(error)}" + suffix
    return f"Claude API error: {error}"


def is_transient(error: anthropic.APIStatusError) -> bool:
    """An overloaded or internal error (an HTTP 5xx, or that type inside a stream): worth asking again."""
    return error_type(error) in TRANSIENT_ERRORS or error.status_code >= 500


def error_type(error: anthropic.APIStatusError) -> str:
    """The `error.type` of the API's JSON error body (inside a stream, the only sign of what broke)."""
    body = error.body
    inner = body.get("error") if isinstance(body, dict) else None
    return str(inner.get("type") or "") if isinstance(inner, dict) else ""


def api_message(error: anthropic.APIStatusError) -> str:
    """The `error.message` of the API's JSON error body (the SDK's summary without one)."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(error.message)


def container_is_gone(error: anthropic.APIStatusError, container_id: str) -> bool:
    """A 4xx that names the container and says it is gone; any other refusal keeps it.

    What counts is the error's message and code: its type (`invalid_request_error`,
    `not_found_error`) says nothing about the container itself."""
    if error.status_code not in (400, 404, 410):
        return False
    said = f"{error.error_code or ''} {api_message(error)}".lower()
    names_it = container_id.lower() in said or bool(_NAMES_CONTAINER.search(said))
    return names_it and any(word in said for word in CONTAINER_GONE_WORDS)
