"""What one model request is made of besides the messages: model, tool, output limit, system prompt.

A turn takes these from its channel's settings, so a channel can have its own. The system
prompt and the tools are built the same byte for byte on every request of a thread, so the
prompt cache keeps matching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from anthropic import Omit, omit
from anthropic.types import CacheControlEphemeralParam, OutputConfigParam, SkillParams, TextBlockParam, ToolUnionParam

from .web import WebTools

# Prompt caching: the system prompt, the previous request's end and the newest block.
EPHEMERAL: CacheControlEphemeralParam = {"type": "ephemeral"}

DEFAULT_SYSTEM_PROMPT = (
    "You are threadbox, a helpful assistant in a Slack thread. You can run code in a sandboxed"
    " container that persists for the whole thread: files you write stay there for later"
    " messages. To share a file with the user, copy it into $OUTPUT_DIR and list that directory"
    " in the same bash command, e.g. `cp chart.png report.csv \"$OUTPUT_DIR\"/ && ls \"$OUTPUT_DIR\"`:"
    " only the files at the top level of $OUTPUT_DIR come back (each command gets a fresh, empty"
    " one), and those are uploaded to the thread; a file written anywhere else stays in the"
    " container. A file you make with the text editor is shared the same way: copy it into"
    " $OUTPUT_DIR with a bash command. The files the user shares are already in the container;"
    " do not copy those out unless asked. For spreadsheets, slide decks, Word documents and PDFs,"
    " use the skills under /skills when they are there. The container has no network; pages are"
    " read with the web tools when they are offered. In shared threads each message starts"
    " with its author's name. Answer in concise Markdown."
)


@dataclass(frozen=True)
class ModelSettings:
    """The model request's own settings (each channel may have its own)."""

    model: str
    tool_version: str
    """The code execution tool's type, e.g. `code_execution_20250825`."""
    max_tokens: int
    system_prompt: str
    web: WebTools = field(default_factory=WebTools)
    skills: tuple[SkillParams, ...] = ()
    """The skills a new thread starts with (a thread keeps the list it started with)."""
    effort: str | None = None
    """`output_config.effort`; None leaves it to the model."""
    context_window: int | None = None
    """The model's window, where it is not the configured model's."""

    def output_config(self) -> OutputConfigParam | Omit:
        if self.effort is None:
            return omit
        return cast(OutputConfigParam, {"effort": self.effort})

    def system(self) -> list[TextBlockParam]:
        return [{"type": "text", "text": self.system_prompt, "cache_control": EPHEMERAL}]

    def tools(self) -> list[ToolUnionParam]:
        # The version is a setting, so its type is a string the SDK's literals cannot know.
        return [cast(ToolUnionParam, {"type": self.tool_version, "name": "code_execution"}), *self.web.tools()]
