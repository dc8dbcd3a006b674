"""Files Claude's answer names as made, that never reached the thread.

The code execution tool returns only files copied to the top level of `$OUTPUT_DIR`; one
written anywhere else stays in the container. When the answer talks of such a file, the thread
is told which, and how to get it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..outbound.text import code_span

# What code typically makes for people (a script it runs is not one of them).
OUTPUT_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp pdf csv tsv xlsx xls docx pptx json html htm md txt zip tar gz parquet"
    " ipynb mp3 mp4 wav xml yaml yml log".split()
)
_FILE_NAME = re.compile(r"(?<![\w.-])([\w][\w.-]*\.([A-Za-z0-9]{1,6}))(?![\w-])")
# What, just before a name on its line, says it is being written (a redirect, `savefig(`,
# `to_csv(`, `-o`, "saved"…), rather than read or listed.
_WRITE_CUE = re.compile(
    r"(>>?|\bsavefig|\bto_\w+|\bsave\w*|\bwrite\w*|\bdump|\s-o|--output|\btee|\btouch|\bsaved|\bwrote"
    r"|\bwritten|\bcreated|\bexported|\bgenerated)\W{0,4}[\w./-]*$",
    re.IGNORECASE,
)
NOTE = (
    ":paperclip: {names} {was} made in the container but not shared: only files copied to `$OUTPUT_DIR`"
    " come back to the thread. Ask me to copy {it} to `$OUTPUT_DIR` to get {it} here."
)


def unshared_files(
    assistant_content: Iterable[Mapping[str, Any]], answer: str, shared: Iterable[str], own: Iterable[str]
) -> list[str]:
    """Names the answer mentions that the turn's code made, other than those shared (or the
    person's `own` files)."""
    made = _files_made(assistant_content)
    named = {match.group(1) for match in _FILE_NAME.finditer(answer)}
    return sorted((made & named) - set(shared) - set(own))


def unshared_note(names: list[str]) -> str | None:
    if not names:
        return None
    listed = ", ".join(code_span(name) for name in names)
    one = len(names) == 1
    return NOTE.format(names=listed, was="was" if one else "were", it="it" if one else "them")


def _files_made(content: Iterable[Mapping[str, Any]]) -> set[str]:
    """Basenames the turn's code made, as far as its runs show: every text-editor file, and the
    output-like names that its commands, code and printed output say are written."""
    made: set[str] = set()
    for block in content:
        kind = str(block.get("type", ""))
        if kind == "server_tool_use" and isinstance(block.get("input"), dict):
            data = block["input"]
            if block.get("name") == "text_editor_code_execution" and data.get("command") == "create":
                made.add(str(data.get("path", "")).rsplit("/", 1)[-1])
            said = [value for value in data.values() if isinstance(value, str)]
        elif kind.endswith("_tool_result") and isinstance(block.get("content"), dict):
            said = [str(block["content"].get("stdout") or "")]
        else:
            continue
        made.update(name for value in said for name in _written(value))
    return made


def _written(text: str) -> list[str]:
    """Output-like names in `text` that a write cue on their line comes just before."""
    names = []
    for match in _FILE_NAME.finditer(text):
        before = text[: match.start()].rsplit("\n", 1)[-1][-40:]
        if match.group(2).lower() in OUTPUT_EXTENSIONS and _WRITE_CUE.search(before):
            names.append(match.group(1).rsplit("/", 1)[-1])
    return names
