"""Code runs in words: a short title for each run, and whether it worked with an excerpt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The server tools that run code in the container (a code run each); the web tools run on
# Anthropic's side.
CODE_TOOL_NAMES = ("bash_code_execution", "text_editor_code_execution", "code_execution")


def tool_title(name: str, tool_input: object) -> str:
    """A short human title for a code run (the command, or the file edit) or a web tool's use."""
    data = tool_input if isinstance(tool_input, dict) else {}
    if name == "web_fetch":
        return one_line(f"Reading {data.get('url', 'a page')}", 120)
    if name == "web_search":
        return one_line(f"Searching the web: {data.get('query', '')}", 120)
    if name == "bash_code_execution" and data.get("command"):
        return one_line(str(data["command"]), 120)
    if name == "text_editor_code_execution":
        return one_line(f"{data.get('command', 'edit')} {data.get('path', '')}".strip(), 120)
    if data.get("code"):
        return one_line(str(data["code"]), 120)
    return name.replace("_", " ")


def tool_sources(result_block: Mapping[str, Any], limit: int = 10) -> list[tuple[str, str]]:
    """The pages a web tool's result read or found, as (url, title): a step shows them."""
    content = result_block.get("content")
    items = content if isinstance(content, list) else [content] if isinstance(content, dict) else []
    found: dict[str, str] = {}
    for item in items:
        url = item.get("url") if isinstance(item, dict) else None
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            title = item.get("title") or (item.get("content") or {}).get("title") if isinstance(item, dict) else None
            found.setdefault(url, one_line(str(title or url), 120))
    return list(found.items())[:limit]


def tool_outcome(result_block: Mapping[str, Any], limit: int = 300) -> tuple[bool, str]:
    """(succeeded, short excerpt of output or the error) for a code-execution result block."""
    content = result_block.get("content") or {}
    if not isinstance(content, dict):
        return True, ""
    if "error_code" in content:
        return False, str(content["error_code"]).replace("_", " ")
    return_code = content.get("return_code", 0)
    stdout, stderr = str(content.get("stdout") or ""), str(content.get("stderr") or "")
    if return_code:
        return False, tail(stderr or stdout, limit) or f"exit code {return_code}"
    return True, tail(stdout, limit)


def one_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def tail(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
