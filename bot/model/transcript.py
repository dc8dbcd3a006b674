"""Reading and reshaping a thread's transcript: the messages sent to Claude and stored after.

Stored messages are the SDK's param shapes (`MessageParam`) as plain JSON; these helpers walk
their blocks without caring which kind each is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from anthropic.types import ContentBlock, ContentBlockParam, MessageParam

from .request import EPHEMERAL

NO_TEXT = "_(no text in the answer)_"


def stored(history: list[dict[str, Any]]) -> list[MessageParam]:
    """A thread's stored history as the SDK's params: it was stored from them, as JSON."""
    return cast(list[MessageParam], history)


def blocks(messages: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every content block of the messages, in order (a plain string content has none)."""
    return [
        block
        for message in messages
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, Mapping)
    ]


def uploaded_file_ids(messages: Iterable[Mapping[str, Any]]) -> list[str]:
    """Files users put into the container (`container_upload` blocks), in order."""
    return [
        str(block["file_id"])
        for block in blocks(messages)
        if block.get("type") == "container_upload" and block.get("file_id")
    ]


def output_file_ids(block: Mapping[str, Any]) -> list[str]:
    """File ids the code produced, from a tool result's `*_output` entries."""
    content = block.get("content")
    if not str(block.get("type", "")).endswith("_tool_result") or not isinstance(content, dict):
        return []
    outputs = content.get("content") or []
    return [str(item["file_id"]) for item in outputs if isinstance(item, dict) and item.get("file_id")]


def thread_file_ids(history: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every Files API file of a thread: what users put into the container, and what code made."""
    history = list(history)
    made = [file_id for block in blocks(history) for file_id in output_file_ids(block)]
    return list(dict.fromkeys([*uploaded_file_ids(history), *made]))


def last_answer_text(history: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last assistant message: what an answered turn showed."""
    for message in reversed(history):
        if message.get("role") == "assistant" and isinstance(message.get("content"), list):
            text = "".join(str(block.get("text", "")) for block in blocks([message]) if block.get("type") == "text")
            return text.strip() or NO_TEXT
    return NO_TEXT


def with_cache_anchor(messages: Sequence[MessageParam]) -> list[MessageParam]:
    """A copy of `messages` with a breakpoint where the previous request of the thread ended.

    That request's automatic breakpoint was its newest block: the last user message before
    the newest message. Marking it explicitly finds that entry however many blocks the answer
    added since (the automatic breakpoint only looks 20 blocks back).
    """
    marked = list(messages)
    anchor = next((i for i in range(len(messages) - 2, -1, -1) if messages[i]["role"] == "user"), None)
    if anchor is None:
        return marked
    content = messages[anchor]["content"]
    anchored: list[ContentBlockParam] = (
        [{"type": "text", "text": content}]
        if isinstance(content, str)
        else list(cast(Iterable[ContentBlockParam], content))
    )
    if not anchored:
        return marked
    anchored[-1] = cast(ContentBlockParam, {**anchored[-1], "cache_control": EPHEMERAL})
    marked[anchor] = cast(MessageParam, {"role": messages[anchor]["role"], "content": anchored})
    return marked


def missing_file_ids(said: str, messages: Iterable[Mapping[str, Any]]) -> set[str]:
    """Files of `container_upload` blocks that an API refusal's words name."""
    return {file_id for file_id in uploaded_file_ids(messages) if file_id in said}


def without_files(messages: Sequence[MessageParam], file_ids: set[str]) -> list[MessageParam]:
    """The messages with those files' `container_upload` blocks replaced by a note for Claude."""

    def replace(block: Any) -> Any:
        if isinstance(block, dict) and block.get("type") == "container_upload" and block.get("file_id") in file_ids:
            return {"type": "text", "text": f"[A file shared here ({block['file_id']}) no longer exists.]"}
        return block

    return [
        cast(MessageParam, {**message, "content": [replace(block) for block in message["content"]]})
        if isinstance(message.get("content"), list)
        else message
        for message in messages
    ]


def as_param(block: ContentBlock) -> ContentBlockParam:
    """A response block as it is sent back: exactly as received (signatures and encrypted
    fields included), its JSON being its param shape."""
    return cast(ContentBlockParam, block.model_dump(mode="json", exclude_none=True))


def paired(blocks: list[ContentBlockParam]) -> list[ContentBlockParam]:
    """The blocks without a server tool call whose result is not among them."""
    results = {block.get("tool_use_id") for block in blocks if str(block["type"]).endswith("_tool_result")}
    return [block for block in blocks if block["type"] != "server_tool_use" or block.get("id") in results]


def continuation(blocks: list[ContentBlockParam]) -> tuple[list[ContentBlockParam], list[ContentBlockParam]]:
    """The blocks a request may continue after (up to the last finished code run, as after
    `pause_turn`), and those after them."""
    kept = paired(blocks)
    end = max((i + 1 for i, block in enumerate(kept) if str(block["type"]).endswith("_tool_result")), default=0)
    return kept[:end], kept[end:]
