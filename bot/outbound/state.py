"""What a reply shows, whichever renderer shows it: the answer's text, its steps, its closing line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from slack_sdk.models.blocks.block_elements import UrlSourceElement
from slack_sdk.models.messages.chunk import TaskUpdateChunk

from .text import code_span, defuse_mentions, escape_mrkdwn

WORKING_TEXT = "_Working on it…_"
# A step shows at most this much of the words before it (Slack's task details are short).
DETAILS_LIMIT = 280


@dataclass(frozen=True)
class ReplyTarget:
    """Where a reply goes, and who it is for (streaming in channels needs the recipient)."""

    channel_id: str
    thread_ts: str | None
    team_id: str
    user_id: str


@dataclass
class Step:
    id: str
    title: str
    status: str = "in_progress"
    output: str = ""
    details: str = ""
    """What Claude said it was about to do (its words before the run)."""
    sources: list[tuple[str, str]] = field(default_factory=list)
    """The pages it read (url, title), shown as the step's sources."""
    kind: str = "code"
    """`code` (a run in the container) or `web` (a web tool's use)."""

    def chunk(self) -> TaskUpdateChunk:
        return TaskUpdateChunk(
            id=self.id,
            title=defuse_mentions(self.title),
            status=self.status,
            details=defuse_mentions(self.details) or None,
            output=defuse_mentions(self.output) or None,
            sources=[UrlSourceElement(url=url, text=defuse_mentions(title)) for url, title in self.sources] or None,
        )

    def line(self) -> str:
        icon = {"in_progress": "⏳", "complete": "✅", "error": "⚠️"}.get(self.status, "•")
        said = f" — _{escape_mrkdwn(self.details)}_" if self.details else ""
        return f"{icon} {code_span(self.title)}{said}"


def words_so_far(thinking: str, limit: int = DETAILS_LIMIT) -> str:
    """Claude's latest words for itself on one line, cut at the front to `limit` characters."""
    line = " ".join(thinking.split())
    return line if len(line) <= limit else "…" + line[-(limit - 1) :]


@dataclass
class ReplyState:
    text: str = ""
    thinking: str = ""
    """Words Claude wrote since the last step (current models put those between runs here)."""
    steps: dict[str, Step] = field(default_factory=dict)
    closing: list[dict[str, Any]] = field(default_factory=list)
    """What ends a finished reply: its closing line, its feedback buttons."""


class Renderer(Protocol):
    """Shows a `ReplyState` in Slack: streamed, or as an edited message."""

    @property
    def message_ts(self) -> str | None:
        """The reply message being written now, once Slack has it."""

    async def start(self, state: ReplyState) -> None: ...

    async def text(self, state: ReplyState, delta: str) -> None: ...

    async def step(self, state: ReplyState, step: Step) -> None: ...

    async def finish(self, state: ReplyState, footer: str) -> None: ...


# Links under an answer to the pages it read; the rest are counted.
SOURCES_SHOWN = 8


def sources_line(state: ReplyState) -> str:
    """"Sources: <link|title>, …": the pages the turn's web tools read or found ("" for none)."""
    pages = dict(source for step in state.steps.values() for source in step.sources)
    if not pages:
        return ""
    links = [
        f"<{url.replace('>', '%3E').replace('|', '%7C')}|{escape_mrkdwn(title.replace('|', '/'))}>"
        for url, title in list(pages.items())[:SOURCES_SHOWN]
    ]
    more = f" and {len(pages) - SOURCES_SHOWN} more" if len(pages) > SOURCES_SHOWN else ""
    return "*Sources:* " + ", ".join(links) + more


def final_status(state: ReplyState, failed: bool) -> str:
    """The line that closes a reply: how the turn ended and how much code ran."""
    code = [step for step in state.steps.values() if step.kind == "code"]
    runs = len(code)
    errors = sum(step.status == "error" for step in code)
    ran = f"{runs} code run{'s' if runs != 1 else ''}" + (f", {errors} with errors" if errors else "")
    if failed:
        return f"⚠️ Stopped early · {ran}" if runs else "⚠️ Stopped early"
    return f"✅ Done · {ran}" if runs else ""
