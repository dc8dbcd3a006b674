"""Splitting and shaping text for Slack's size limits."""

from __future__ import annotations

import re

from ..threads import plain_text, strip_mention

# `<!channel>`, `<!here>`, `<!everyone>`, `<!group>`, `<@U…>`, `<#C…>`, `<!subteam^…>`: Slack's
# mention syntax. `<!DOCTYPE` and `<!--` in code are left as written. A `<` or `<!…` at the
# very end may become a mention with the next streamed piece.
_MENTION_START = re.compile(r"<(?=[@#]|!(?:here|channel|everyone|group|subteam)|![\w^]*\Z)|<\Z", re.IGNORECASE)
WORD_JOINER = "\u2060"

# The `markdown` block holds at most 12,000 characters; keep room for a re-opened code fence.
MARKDOWN_BLOCK_LIMIT = 11_500
# Slack's plain `text` fallback is truncated by clients past this; keep notifications short.
NOTIFICATION_TEXT_LIMIT = 3_000


def split_markdown(text: str, limit: int = MARKDOWN_BLOCK_LIMIT) -> list[str]:
    """Split Markdown into pieces of at most `limit` characters, nothing lost.

    Cuts at paragraph, then line, then word boundaries; a code fence open at a cut is closed
    at the end of one piece and re-opened at the start of the next so both render as code.
    """
    pieces: list[str] = []
    remaining = text.strip("\n")
    fence = ""
    while remaining:
        prefix = f"{fence}\n" if fence else ""
        budget = limit - len(prefix) - 4  # room for a closing fence
        if len(prefix) + len(remaining) <= limit:
            pieces.append(prefix + remaining)
            break
        cut = _cut_point(remaining, budget)
        head, remaining = remaining[:cut].rstrip(), remaining[cut:].lstrip("\n")
        open_fence = _open_fence_after(head, fence)
        piece = prefix + head
        if open_fence:
            piece += "\n```"
        pieces.append(piece)
        fence = open_fence
    return pieces or [""]


def _cut_point(text: str, budget: int) -> int:
    window = text[:budget]
    for separator in ("\n\n", "\n", " "):
        index = window.rfind(separator)
        if index > budget // 2:
            return index + len(separator)
    return budget


def _open_fence_after(chunk: str, fence: str) -> str:
    """The fence (e.g. "```python") still open after `chunk`, given the one open before it."""
    for line in chunk.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = "" if fence else stripped
    return fence


def notification_text(text: str) -> str:
    """The `text` field that accompanies blocks: shown in notifications and old clients."""
    line = escape_mrkdwn(" ".join(text.split()))
    if len(line) <= NOTIFICATION_TEXT_LIMIT:
        return line or " "
    return line[: NOTIFICATION_TEXT_LIMIT - 1] + "…"


def escape_mrkdwn(text: str) -> str:
    """Text for a mrkdwn or plain `text` field, shown as written: `&`, `<` and `>` escaped the
    way Slack asks, so nothing in it becomes a mention, a link or a ping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code_span(text: str) -> str:
    """Text in code style in a mrkdwn field, shown as written (a backtick in it cannot end it)."""
    return f"`{escape_mrkdwn(text.replace('`', 'ˋ'))}`"


_MARKUP = re.compile(r"<([^<>]*)>")


def markup_as_words(text: str) -> str:
    """A Slack message's markup (`<@U…|name>`, `<#C…|name>`, `<!channel>`, `<url|label>`,
    `<!date^…|fallback>`) as the words it shows, for quoting a message elsewhere without
    linking or pinging anything. Escape the result for the field it goes into."""

    def words(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target[:1] in ("@", "#"):
            return target[0] + (label.lstrip(target[0]) or target[1:])
        if target.startswith("!"):
            name, _, rest = target[1:].partition("^")
            if label:
                return label
            return "@" + (rest if name == "subteam" and rest else name)
        return label or target

    return _MARKUP.sub(words, text)


def defuse_mentions(markdown: str) -> str:
    """Markdown (and plain titles) from the model, a container or a user's file, with Slack's
    mention syntax broken by an invisible word joiner: it reads the same and pings no one."""
    return _MENTION_START.sub("<" + WORD_JOINER, markdown)


def quoted(text: str, bot_user_id: str, limit: int) -> str:
    """A quoted excerpt of what someone said, shown as written: no mention, link or
    `<!channel>` in it does anything, and the bot's own mention is left out."""
    words = " ".join(plain_text(markup_as_words(strip_mention(text, bot_user_id) if bot_user_id else text)).split())
    if not words:
        return "_(no text)_"
    if len(words) > limit:
        words = words[: limit - 1].rstrip() + "…"
    return f"“{escape_mrkdwn(words)}”"
