"""A thread's history as a Jupyter notebook (nbformat 4), in the thread's order: each person's
message and each answer as a markdown cell, each code run as a `%%bash` cell with its stdout,
stderr and return code as outputs, each file the text editor wrote as a cell that writes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

BASH_TOOL = "bash_code_execution"
EDITOR_TOOL = "text_editor_code_execution"


def thread_notebook(history: Sequence[Mapping[str, Any]], *, title: str) -> NotebookNode:
    """The notebook of a thread's stored history (valid by nbformat's schema)."""
    cells = [new_markdown_cell(f"# {title}\n\nExported from Slack by threadbox. Run the cells in order "
                               "(the code cells use `%%bash` and `%%writefile`) to redo the work.")]
    results: dict[str, Mapping[str, Any]] = {
        str(block.get("tool_use_id")): block
        for message in history for block in _blocks(message)
        if str(block.get("type", "")).endswith("_tool_result")
    }
    count = 0
    for message in history:
        if message.get("role") == "user":
            said = "\n\n".join(str(b.get("text", "")) for b in _blocks(message) if b.get("type") == "text")
            if said.strip():
                cells.append(new_markdown_cell(f"**Asked:** {said}"))
            continue
        for block in _blocks(message):
            kind = block.get("type")
            if kind in ("text", "thinking"):
                words = str(block.get("text" if kind == "text" else "thinking") or "").strip()
                if words:
                    cells.append(new_markdown_cell(f"**threadbox:** {words}"))
            elif kind == "server_tool_use" and block.get("name") in (BASH_TOOL, EDITOR_TOOL):
                cell = _code_cell(block, results.get(str(block.get("id"))))
                if cell is not None:
                    count += 1
                    cell.execution_count = count
                    for output in cell.outputs:
                        if output.output_type == "execute_result":
                            output.execution_count = count
                    cells.append(cell)
    notebook: NotebookNode = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    nbformat.validate(notebook)
    return notebook


def notebook_bytes(notebook: NotebookNode) -> bytes:
    return str(nbformat.writes(notebook)).encode()


def _blocks(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, Mapping)]


def _code_cell(use: Mapping[str, Any], result: Mapping[str, Any] | None) -> NotebookNode | None:
    data = use.get("input") if isinstance(use.get("input"), Mapping) else {}
    assert isinstance(data, Mapping)
    cell: NotebookNode
    if use.get("name") == BASH_TOOL:
        cell = new_code_cell(f"%%bash\n{data.get('command', '')}")
        cell.outputs = _bash_outputs(result)
        return cell
    path, command = str(data.get("path", "")), data.get("command")
    if command == "create":
        cell = new_code_cell(f"%%writefile {path}\n{data.get('file_text', '')}")
        return cell
    if command == "str_replace":
        source = (
            "from pathlib import Path\n"
            f"path = Path({path!r})\n"
            f"path.write_text(path.read_text().replace({data.get('old_str', '')!r}, {data.get('new_str', '')!r}, 1))"
        )
        cell = new_code_cell(source)
        return cell
    return None  # a view changes nothing


def _bash_outputs(result: Mapping[str, Any] | None) -> list[NotebookNode]:
    content = (result or {}).get("content")
    if not isinstance(content, Mapping):
        return []
    if content.get("type") == "bash_code_execution_tool_result_error":
        return [new_output("stream", name="stderr", text=f"the run failed: {content.get('error_code')}\n")]
    outputs = []
    for name in ("stdout", "stderr"):
        if content.get(name):
            outputs.append(new_output("stream", name=name, text=str(content[name])))
    code = content.get("return_code")
    outputs.append(new_output("execute_result", data={"text/plain": f"return code {code}"},
                              metadata={"threadbox": {"return_code": code}}))
    return outputs
