"""Splitting and shaping text for Slack's size limits."""

from __future__ import annotations

import re
import time

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
        piece = prefix + head
        fence = open_fence(piece)
        pieces.append(f"{piece}\n{fence[:3]}" if fence else piece)
    return pieces or [""]


def _cut_point(text: str, budget: int) -> int:
    window = text[:budget]
    for separator in ("\n\n", "\n", " "):
        index = window.rfind(separator)
        if index > budget // 2:
            return index + len(separator)
    return budget


def open_fence(markdown: str) -> str:
    """The fence line (e.g. "```python") of a code block `markdown` leaves open, or ""."""
    guard = MarkdownGuard()
    guard.feed(markdown)
    guard.flush()
    return guard.fence


def notification_text(text: str) -> str:
    """The `text` field that accompanies blocks: shown in notifications and old clients."""
    line = escape_mrkdwn(" ".join(text.split()))
    if len(line) <= NOTIFICATION_TEXT_LIMIT:
        return line or " "
    return line[: NOTIFICATION_TEXT_LIMIT - 1] + "…"


def slack_date(epoch: float, format_: str) -> str:
    """Slack's date formatting: each reader sees the time in their own time zone."""
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
    return f"<!date^{int(epoch)}^{format_}|{fallback}>"


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


def defuse_mentions(text: str) -> str:
    """Plain text from the model, a container or a user's file (a step's title, a file's
    title), with Slack's mention syntax broken by an invisible word joiner: it reads the same
    and pings no one. For Markdown use `defuse_markdown`, which leaves code as written."""
    return _MENTION_START.sub("<" + WORD_JOINER, text)


def defuse_markdown(markdown: str) -> str:
    """Markdown with every mention Slack would act on defused, and code spans and fenced
    blocks exactly as written (Slack pings no one from code)."""
    guard = MarkdownGuard()
    return guard.feed(markdown) + guard.flush()


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_BACKTICKS = re.compile(r"`+")


class MarkdownGuard:
    """Defuses mentions in Markdown that arrives in pieces (a streamed answer), outside code.

    Whole lines are decided as they complete; a partial line is held back while it could
    still open or close code (a backtick) or finish a mention (a `<`), so what goes out is
    never changed by what follows. It also knows the code fence open at any point, so a
    message that ends inside a code block can close it and the next can reopen it.
    """

    def __init__(self) -> None:
        self.fence = ""
        """The fence line (e.g. "```python") of the code block open now; "" outside one."""
        self._partial = ""
        self._line_open = False
        """What went out so far ends inside a line."""

    def feed(self, text: str) -> str:
        """What of `text` (following all fed before) can go out now, defused."""
        out = self._decide(text)
        if out:
            self._line_open = not out.endswith("\n")
        return out

    def _decide(self, text: str) -> str:
        self._partial += text
        lines = self._partial.split("\n")
        self._partial = lines.pop()
        out = "".join(self._line(line) + "\n" for line in lines)
        if self._partial and not self.fence and not _FENCE.match(self._partial) and not (
            "`" in self._partial or "<" in self._partial or self._partial.lstrip(" ") in ("", "`", "``", "~", "~~")
        ):
            out += _defuse_outside_spans(self._partial)
            self._partial = ""
        elif self._partial and self.fence and not _FENCE.match(self._partial) and len(self._partial) > 3:
            out += self._partial  # inside a block, as written (it cannot be a closing fence)
            self._partial = ""
        return out

    def flush(self) -> str:
        """Everything held back, as if its line were complete."""
        partial, self._partial = self._partial, ""
        out = self._line(partial, complete=False) if partial else ""
        if out:
            self._line_open = not out.endswith("\n")
        return out

    def close(self) -> str:
        """What ends the text here with no code block left open: what was held back, and a
        closing fence when a block is open (the block stays open for text that follows)."""
        held = self.flush()
        if not self.fence:
            return held
        closing = ("\n" if self._line_open else "") + self.fence[:3] + "\n"
        self._line_open = False
        return held + closing

    def _line(self, line: str, *, complete: bool = True) -> str:
        fence = _FENCE.match(line)
        if self.fence:
            closes = fence is not None and fence.group(1)[0] == self.fence[0] and not fence.group(2).strip()
            if closes:
                self.fence = ""
            return line
        if fence and complete and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            self.fence = fence.group(1) + fence.group(2).strip()
            return line
        return _defuse_outside_spans(line)


def _defuse_outside_spans(line: str) -> str:
    """One line's mentions defused, its code spans (matched backtick runs) left as written."""
    out: list[str] = []
    plain_from, runs, index = 0, list(_BACKTICKS.finditer(line)), 0
    while index < len(runs):
        opener = runs[index]
        closing = [i for i in range(index + 1, len(runs)) if len(runs[i].group()) == len(opener.group())]
        if not closing:  # an unmatched run is a literal backtick
            index += 1
            continue
        closer = runs[closing[0]]
        out += [defuse_mentions(line[plain_from : opener.start()]), line[opener.start() : closer.end()]]
        plain_from, index = closer.end(), closing[0] + 1
    out.append(defuse_mentions(line[plain_from:]))
    return "".join(out)


def close_fence(markdown: str) -> str:
    """`markdown`, with a code block it leaves open closed, so what follows is not code."""
    fence = open_fence(markdown)
    return f"{markdown.rstrip()}\n{fence[:3]}" if fence else markdown


def quoted(text: str, bot_user_id: str, limit: int) -> str:
    """A quoted excerpt of what someone said, shown as written: no mention, link or
    `<!channel>` in it does anything, and the bot's own mention is left out."""
    words = " ".join(plain_text(markup_as_words(strip_mention(text, bot_user_id) if bot_user_id else text)).split())
    if not words:
        return "_(no text)_"
    if len(words) > limit:
        words = words[: limit - 1].rstrip() + "…"
    return f"“{escape_mrkdwn(words)}”"
