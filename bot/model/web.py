"""The web tools (run on Anthropic's side; the container itself has no network): web fetch
reads pages whose URLs people gave or a search returned, web search (paid per search) finds
them. Built the same byte for byte on every request, so the prompt cache keeps matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from anthropic.types import ToolUnionParam

WEB_FETCH_TOOL = "web_fetch_20260318"
WEB_SEARCH_TOOL = "web_search_20260318"


@dataclass(frozen=True)
class WebTools:
    """`WEB_FETCH`, `WEB_SEARCH` and their limits."""

    fetch: bool = False
    search: bool = False
    fetch_max_uses: int = 5
    search_max_uses: int = 5
    max_content_tokens: int = 25_000
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()

    def tools(self) -> list[ToolUnionParam]:
        tools: list[dict[str, object]] = []
        domains: dict[str, object] = (
            {"allowed_domains": list(self.allowed_domains)} if self.allowed_domains
            else {"blocked_domains": list(self.blocked_domains)} if self.blocked_domains else {}
        )
        if self.search:
            tools.append({
                "type": WEB_SEARCH_TOOL, "name": "web_search", "max_uses": self.search_max_uses,
                "allowed_callers": ["direct"], **domains,
            })
        if self.fetch:
            # Pages people named (in their messages) or a search found; never a URL the code
            # printed, and never fetched from the code itself (`allowed_callers`).
            searched = (
                {"type": "only", "tools": [{"type": "tool_reference", "name": "web_search"}]}
                if self.search else {"type": "none"}
            )
            tools.append({
                "type": WEB_FETCH_TOOL, "name": "web_fetch", "max_uses": self.fetch_max_uses,
                "max_content_tokens": self.max_content_tokens, "citations": {"enabled": True},
                "allowed_callers": ["direct"],
                "url_sources": {"user_input": {"type": "all"}, "server_tool_results": searched,
                                "client_tool_results": {"type": "none"}},
                **domains,
            })
        return [cast(ToolUnionParam, tool) for tool in tools]
