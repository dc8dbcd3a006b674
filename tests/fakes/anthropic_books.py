"""The fake Anthropic API's books: token counts, the prompt cache and context editing.

A request is laid out as the API caches it: tools, then system, then each message's
content blocks. Tokens are counted per block (a rough word-piece tokenizer, not the
model's, but stable and dense enough for code output). The cache keeps entries keyed by the
hash of the prompt up to a block; an entry is written at each breakpoint (`cache_control`
on a block, or the top-level `cache_control` that marks the last block), looked up at the
breakpoint and up to `LOOKBACK_BLOCKS` blocks before it, lives 5 minutes (or 1 hour) from
the request's start and is refreshed by a hit. Prefixes under the minimum are not cached.
Context editing (`clear_tool_uses_20250919`) is applied before anything is counted.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

LOOKBACK_BLOCKS = 20
MAX_BREAKPOINTS = 4
MIN_CACHEABLE_TOKENS = 1024
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
BLOCK_OVERHEAD_TOKENS = 3
CLEAR_TOOL_USES = "clear_tool_uses_20250919"
CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
CLEARED_PLACEHOLDER = "[cleared to save context]"
# Fields that are structure, not text the model reads.
_UNCOUNTED_KEYS = {"type", "id", "tool_use_id", "cache_control", "file_id", "citations"}
_PIECES = re.compile(r" ?[A-Za-z]{1,6}| ?\d{1,3}| ?[^\sA-Za-z\d]|\s+")


def text_tokens(text: str) -> int:
    """Tokens of a string: short word pieces, digit groups, single symbols, whitespace runs."""
    return len(_PIECES.findall(text))


def value_tokens(value: Any) -> int:
    """Tokens of the text inside a JSON value (keys that are structure are not counted)."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, dict):
        return sum(value_tokens(v) for k, v in value.items() if k not in _UNCOUNTED_KEYS)
    if isinstance(value, list):
        return sum(value_tokens(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 1
    return 0


@dataclass
class PromptBlock:
    """One cacheable unit of a prompt, in the order the API reads it."""

    where: str  # "tools", "system" or the message role
    starts_message: bool
    block: dict[str, Any]
    tokens: int
    cache_control: dict[str, Any] | None

    def identity(self) -> bytes:
        content = {k: v for k, v in self.block.items() if k != "cache_control"}
        return json.dumps([self.where, self.starts_message, content], sort_keys=True).encode()


def prompt_blocks(body: dict[str, Any]) -> list[PromptBlock]:
    """The request as a list of blocks: tools, system, then every message's content."""
    blocks: list[PromptBlock] = []
    for tool in body.get("tools") or []:
        blocks.append(PromptBlock("tools", True, tool, value_tokens(tool) + 50, tool.get("cache_control")))
    system = body.get("system")
    if isinstance(system, str) and system:
        system = [{"type": "text", "text": system}]
    for block in system or []:
        blocks.append(_block("system", True, block))
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for index, block in enumerate(content or []):
            blocks.append(_block(message.get("role", "user"), index == 0, block))
    top_level = body.get("cache_control")
    if isinstance(top_level, dict) and blocks:
        blocks[-1].cache_control = top_level
    return blocks


def _block(where: str, starts_message: bool, block: dict[str, Any]) -> PromptBlock:
    return PromptBlock(where, starts_message, block, value_tokens(block) + BLOCK_OVERHEAD_TOKENS, block.get("cache_control"))


def count_tokens(body: dict[str, Any]) -> int:
    return sum(block.tokens for block in prompt_blocks(body))


def breakpoint_problem(body: dict[str, Any]) -> str:
    """The API's refusal of too many breakpoints or an unknown ttl, or ""."""
    marked = [b for b in prompt_blocks(body) if b.cache_control is not None]
    if len(marked) > MAX_BREAKPOINTS:
        return f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marked)}."
    for block in marked:
        if block.cache_control.get("type") != "ephemeral":
            return "cache_control.type: Input should be 'ephemeral'"
        if block.cache_control.get("ttl", "5m") not in TTL_SECONDS:
            return "cache_control.ttl: Input should be '5m' or '1h'"
    return ""


@dataclass
class CacheBill:
    """How one request's input tokens were billed."""

    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass
class PromptCache:
    """Cache entries: prefix hash -> expiry time."""

    min_tokens: int = MIN_CACHEABLE_TOKENS
    entries: dict[str, float] = field(default_factory=dict)

    def bill(self, body: dict[str, Any], now: float) -> CacheBill:
        """Look up and write the request's prefixes; return how its input is billed."""
        blocks = prompt_blocks(body)
        keys, cumulative = _prefix_keys(str(body.get("model")), blocks)
        breakpoints = [i for i, b in enumerate(blocks) if b.cache_control is not None]
        hit = -1
        for b in breakpoints:
            for j in range(b, max(-1, b - LOOKBACK_BLOCKS - 1), -1):
                if self.entries.get(keys[j], 0.0) > now:
                    hit = max(hit, j)
                    break
        read = cumulative[hit] if hit >= 0 else 0
        if hit >= 0:
            self.entries[keys[hit]] = max(self.entries[keys[hit]], now + TTL_SECONDS["5m"])
        written, by_ttl = read, {"5m": 0, "1h": 0}
        for b in breakpoints:
            if b <= hit or cumulative[b] < self.min_tokens:
                continue
            ttl = blocks[b].cache_control.get("ttl", "5m")  # type: ignore[union-attr]
            self.entries[keys[b]] = max(self.entries.get(keys[b], 0.0), now + TTL_SECONDS[ttl])
            by_ttl[ttl] += cumulative[b] - written
            written = cumulative[b]
        total = cumulative[-1] if cumulative else 0
        return CacheBill(
            input_tokens=total - written,
            cache_creation_input_tokens=written - read,
            cache_read_input_tokens=read,
            ephemeral_5m_input_tokens=by_ttl["5m"],
            ephemeral_1h_input_tokens=by_ttl["1h"],
        )


def _prefix_keys(model: str, blocks: list[PromptBlock]) -> tuple[list[str], list[int]]:
    running = hashlib.sha256(model.encode())
    keys, cumulative, tokens = [], [], 0
    for block in blocks:
        running.update(block.identity())
        keys.append(running.hexdigest())
        tokens += block.tokens
        cumulative.append(tokens)
    return keys, cumulative


# --- context editing -----------------------------------------------------------------------


def context_edit_problem(body: dict[str, Any], betas: set[str]) -> str:
    management = body.get("context_management")
    if management is None:
        return ""
    if CONTEXT_MANAGEMENT_BETA not in betas:
        return "context_management: Extra inputs are not permitted"
    edits = management.get("edits") if isinstance(management, dict) else None
    if not isinstance(edits, list):
        return "context_management.edits: Field required"
    for edit in edits:
        if not isinstance(edit, dict) or edit.get("type") != CLEAR_TOOL_USES:
            return f"context_management.edits: unknown edit type {edit.get('type') if isinstance(edit, dict) else edit!r}"
    return ""


def apply_context_edits(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request as the model sees it after `clear_tool_uses_20250919`, and the applied edits.

    The oldest tool results are replaced by a placeholder, keeping the newest `keep` tool uses,
    once the prompt is over the trigger; an edit that would clear less than `clear_at_least`
    is not applied.
    """
    edits = (body.get("context_management") or {}).get("edits") or []
    applied: list[dict[str, Any]] = []
    for edit in edits:
        trigger = _amount(edit.get("trigger"), 100_000)
        if count_tokens(body) <= trigger:
            continue
        edited = copy.deepcopy(body)
        results = _tool_results(edited, set(edit.get("exclude_tools") or []))
        keep = _amount(edit.get("keep"), 3)
        clearable = results[: max(0, len(results) - keep)]
        cleared_tokens = 0
        for use, result in clearable:
            before = value_tokens(result) + (value_tokens(use) if edit.get("clear_tool_inputs") is True else 0)
            _clear(result)
            if edit.get("clear_tool_inputs") is True and use is not None:
                use["input"] = {}
            after = value_tokens(result)
            cleared_tokens += before - after
        if not clearable or cleared_tokens < _amount(edit.get("clear_at_least"), 0):
            continue
        body = edited
        applied.append({"type": CLEAR_TOOL_USES, "cleared_tool_uses": len(clearable), "cleared_input_tokens": cleared_tokens})
    return body, applied


def _amount(spec: Any, default: int) -> int:
    if isinstance(spec, dict) and isinstance(spec.get("value"), int):
        return int(spec["value"])
    return default


def _tool_results(body: dict[str, Any], excluded: set[str]) -> list[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """(tool use, its result) pairs in order; client `tool_result` blocks and server tool results."""
    uses: dict[str, dict[str, Any]] = {}
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            kind = str(block.get("type", ""))
            if kind in ("tool_use", "server_tool_use"):
                uses[str(block.get("id"))] = block
            elif kind == "tool_result" or kind.endswith("_tool_result"):
                use = uses.get(str(block.get("tool_use_id")))
                if use is not None and use.get("name") in excluded:
                    continue
                pairs.append((use, block))
    return pairs


def _clear(result: dict[str, Any]) -> None:
    if result.get("type") == "tool_result":
        result["content"] = CLEARED_PLACEHOLDER
        return
    content = result.get("content")
    if isinstance(content, dict):
        for key, value in list(content.items()):
            if isinstance(value, str) and key not in _UNCOUNTED_KEYS:
                content[key] = CLEARED_PLACEHOLDER if key in ("stdout", "content") else ""
