"""The fake Anthropic's web tools: what a request may declare, result blocks shaped as the API
shapes them (encrypted fields included), the fetches the tool settings refuse, and the encrypted
fields the API wants back (see `shared` API facts: Skills and web tools)."""

from __future__ import annotations

import base64
import os
from typing import Any
from urllib.parse import urlparse

WEB_TOOL_VERSIONS = {
    "web_fetch": ("web_fetch_20250910", "web_fetch_20260209", "web_fetch_20260309", "web_fetch_20260318"),
    "web_search": ("web_search_20250305", "web_search_20260209", "web_search_20260318"),
}


def _tool_id() -> str:
    return "srvtoolu_" + base64.b32encode(os.urandom(10)).decode().lower()


def _sealed() -> str:
    return base64.b64encode(os.urandom(24)).decode()


def web_fetch(url: str, title: str, page_text: str, tool_id: str | None = None) -> list[dict[str, Any]]:
    """A web fetch as the model makes it, and its result (a document the answer may cite)."""
    tool_id = tool_id or _tool_id()
    use = {"type": "server_tool_use", "id": tool_id, "name": "web_fetch", "input": {"url": url}}
    result = {
        "type": "web_fetch_tool_result", "tool_use_id": tool_id,
        "content": {
            "type": "web_fetch_result", "url": url, "retrieved_at": "2026-12-01T10:00:00Z",
            "content": {
                "type": "document", "title": title, "citations": {"enabled": True},
                "source": {"type": "text", "media_type": "text/plain", "data": page_text},
            },
        },
    }
    return [use, result]


def web_search(query: str, results: list[tuple[str, str]], tool_id: str | None = None) -> list[dict[str, Any]]:
    """A web search as the model makes it, and its results (url, title), each sealed."""
    tool_id = tool_id or _tool_id()
    use = {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": query}}
    found = [
        {"type": "web_search_result", "url": url, "title": title, "encrypted_content": _sealed(), "page_age": None}
        for url, title in results
    ]
    return [use, {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": found}]


def cited(words: str, url: str, title: str, cited_text: str) -> dict[str, Any]:
    """A text block citing a search result, as the API writes one."""
    citation = {"type": "web_search_result_location", "url": url, "title": title, "cited_text": cited_text,
                "encrypted_index": _sealed()}
    return {"type": "text", "text": words, "citations": [citation]}


def web_tool_problem(tools: list[Any]) -> str:
    """What the API refuses in a request's web tools, or ""."""
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        kind = str(tool.get("type", ""))
        for name, versions in WEB_TOOL_VERSIONS.items():
            if not kind.startswith(f"{name}_"):
                continue
            if kind not in versions:
                return f"tools.{i}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
            if tool.get("name") != name:
                return f"tools.{i}.name: Input should be '{name}'"
            if tool.get("allowed_domains") and tool.get("blocked_domains"):
                return f"tools.{i}: allowed_domains and blocked_domains cannot both be set"
            uses = tool.get("max_uses")
            if uses is not None and (not isinstance(uses, int) or uses < 1):
                return f"tools.{i}.max_uses: Input should be greater than or equal to 1"
    return ""


def declared(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name") == name), None)


def fetch_refusal(body: dict[str, Any], url: str, searched: set[str]) -> str | None:
    """The error code a web fetch of `url` gets under the request's tool settings, or None.

    A URL may be fetched when it appears in what a person wrote (`url_sources.user_input`, on
    unless turned off) or in an earlier search result (when `server_tool_results` allows
    web_search); never when it is only in code output. Domain lists apply.
    """
    tool = declared(body, "web_fetch")
    if tool is None:
        return "unavailable"
    host = urlparse(url).hostname or ""

    def matches(domains: list[str]) -> bool:
        return any(host == d or host.endswith("." + d) for d in domains)

    if tool.get("allowed_domains") and not matches(tool["allowed_domains"]):
        return "url_not_allowed"
    if tool.get("blocked_domains") and matches(tool["blocked_domains"]):
        return "url_not_allowed"
    sources = tool.get("url_sources") or {}
    from_people = (sources.get("user_input") or {"type": "all"}).get("type") == "all" and url in _said_by_people(body)
    server = sources.get("server_tool_results") or {"type": "all"}
    allowed_tools = {t.get("name") for t in server.get("tools") or []}
    from_search = url in searched and (
        server.get("type") == "all" or (server.get("type") == "only" and "web_search" in allowed_tools)
    )
    return None if from_people or from_search else "url_not_in_prior_context"


def _said_by_people(body: dict[str, Any]) -> str:
    """The words of every user message (not the tool results in them)."""
    words = []
    for message in body.get("messages") or []:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        words += [str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    return "\n".join(words)


def searched_urls(body: dict[str, Any]) -> set[str]:
    """URLs earlier search results in the request returned."""
    found = set()
    for message in body.get("messages") or []:
        for block in message.get("content") or [] if isinstance(message.get("content"), list) else []:
            if isinstance(block, dict) and block.get("type") == "web_search_tool_result":
                found |= {r.get("url") for r in block.get("content") or [] if isinstance(r, dict)}
    return {url for url in found if isinstance(url, str)}


def sealed_field_problem(i: int, j: int, block: dict[str, Any]) -> str:
    """An assistant block sent back without the encrypted fields the API gave it, or ""."""
    if block.get("type") == "web_search_tool_result":
        for result in block.get("content") or []:
            if isinstance(result, dict) and result.get("type") == "web_search_result" and not result.get("encrypted_content"):
                return f"messages.{i}.content.{j}.content: `encrypted_content` is required"
    if block.get("type") == "text":
        for citation in block.get("citations") or []:
            if citation.get("type") == "web_search_result_location" and not citation.get("encrypted_index"):
                return f"messages.{i}.content.{j}.citations: `encrypted_index` is required"
    return ""


def fetch_error(tool_use_id: str, code: str) -> dict[str, Any]:
    return {"type": "web_fetch_tool_result", "tool_use_id": tool_use_id,
            "content": {"type": "web_fetch_tool_result_error", "error_code": code}}


def server_tool_counts(content: list[dict[str, Any]]) -> dict[str, int]:
    """`usage.server_tool_use`: the web searches and fetches an answer made."""
    names = [b.get("name") for b in content if b.get("type") == "server_tool_use"]
    return {"web_search_requests": names.count("web_search"), "web_fetch_requests": names.count("web_fetch")}
