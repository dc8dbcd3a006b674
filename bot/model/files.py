"""The Files API: what a reset or the retention period deletes."""

from __future__ import annotations

import logging

import anthropic

logger = logging.getLogger(__name__)


async def delete_files(claude: anthropic.AsyncAnthropic, file_ids: list[str]) -> int:
    """Delete files from the Files API; one already gone counts as deleted. Returns how many went."""
    deleted = 0
    for file_id in file_ids:
        try:
            await claude.files.delete(file_id)
            deleted += 1
        except anthropic.NotFoundError:
            deleted += 1
        except anthropic.APIError as error:
            logger.warning("could not delete file %s: %s", file_id, error)
    return deleted
