"""The files an answered turn owes its thread: each shared exactly once, even across a crash,
together in one message or (past `MAX_OUTPUT_FILES`) as one zip."""

from __future__ import annotations

import logging
from collections.abc import Collection

import aiohttp
import anthropic

from storage import Delivery, Store, ThreadFile

from ..errors import SLACK_ERRORS, FileRelayError
from ..ops.metrics import Metrics
from ..outbound.slack_upload import complete_uploads
from ..outbound.text import escape_mrkdwn
from ..outbound.uploads import RelayedFile, StagedFile, relay_outputs_as_zip, stage_output
from .context import TurnContext

logger = logging.getLogger(__name__)


class OwedFiles:
    """Shares what a turn's code produced, recording each step so a crash never shares twice."""

    def __init__(
        self, store: Store, claude: anthropic.AsyncAnthropic, http: aiohttp.ClientSession, metrics: Metrics, *,
        timeout: float, max_separate_files: int,
    ) -> None:
        self.store = store
        self.claude = claude
        self.http = http
        self.metrics = metrics
        self.timeout = timeout
        self.max_separate_files = max_separate_files

    async def deliver(self, turn: TurnContext, user_files: Collection[tuple[str, int]]) -> list[str]:
        """Share the files the turn still owes; a user's own file copied back out (`user_files`:
        name and size) is not echoed. Returns the names of the files shared now."""
        echoes = set(user_files)
        owed: list[Delivery] = []
        for delivery in await self.store.pending_deliveries(turn.item.id):
            if delivery.slack_file_id and await self._shared_already(turn, delivery.slack_file_id):
                await self.store.delivery_done(turn.item.id, delivery.position)
            else:
                owed.append(delivery)
        shared: list[str] = []
        failures: list[str] = []
        if len(owed) > self.max_separate_files:
            failures = await self._deliver_zip(turn, owed, echoes, shared)
        else:
            failures = await self._deliver_together(turn, owed, echoes, shared)
        await turn.say_problems("Some files couldn't be shared:", failures)
        return shared

    async def _deliver_together(
        self, turn: TurnContext, owed: list[Delivery], echoes: set[tuple[str, int]], shared: list[str]
    ) -> list[str]:
        """Each owed file's bytes into Slack, then all of them shared in one message; a failure
        is a line for the thread, never an exception."""
        staged: list[StagedFile] = []
        failures: list[str] = []
        for delivery in owed:
            failure = await self._stage(turn, delivery, echoes, staged)
            failures += [failure] if failure else []
        try:
            if staged:  # one `files.completeUploadExternal` for all: one message, one notification
                uploads, target = [file.upload for file in staged], turn.target
                await complete_uploads(
                    turn.workspace.client, uploads, target.channel_id, target.thread_ts, self.timeout
                )
            for file in staged:
                self.metrics.file_relayed("to_slack", file.relayed.size)
                shared.append(file.relayed.filename)
            await self._note_produced(turn, [(file.relayed, file.upload.file_id) for file in staged])
        except FileRelayError as error:
            failures.append(str(error))
        except (*SLACK_ERRORS, TimeoutError) as error:
            logger.warning("sharing %d files failed: %s", len(staged), error)
            names = ", ".join(f"`{file.relayed.filename}`" for file in staged)
            reason = escape_mrkdwn(str(error) or "no answer in time")
            failures.append(f"couldn't share {escape_mrkdwn(names)}: {reason}")
        for delivery in owed:
            await self.store.delivery_done(turn.item.id, delivery.position)
        return failures

    async def _stage(
        self, turn: TurnContext, delivery: Delivery, echoes: set[tuple[str, int]], staged: list[StagedFile]
    ) -> str | None:
        """One owed file's bytes into Slack, not shared yet; a failure is a line for the thread."""
        item_id = turn.item.id

        async def started(slack_file_id: str) -> None:
            await self.store.delivery_started(item_id, delivery.position, slack_file_id)

        try:
            file = await stage_output(
                self.claude, turn.workspace.client, self.http, delivery.file_id, skip=echoes, on_upload=started,
                timeout=self.timeout,
            )
        except FileRelayError as error:
            return str(error)
        except (*SLACK_ERRORS, TimeoutError) as error:
            logger.warning("file relay of %s failed: %s", delivery.file_id, error)
            return f"couldn't upload file `{delivery.file_id}`: {escape_mrkdwn(str(error) or 'no answer in time')}"
        if file is not None:
            staged.append(file)
        return None

    async def _deliver_zip(
        self, turn: TurnContext, owed: list[Delivery], echoes: set[tuple[str, int]], shared: list[str]
    ) -> list[str]:
        """Many owed files as one zip; every file in it is marked with the zip's Slack id."""
        item_id = turn.item.id

        async def started(slack_file_id: str) -> None:
            for delivery in owed:
                await self.store.delivery_started(item_id, delivery.position, slack_file_id)

        try:
            failures, packed, zip_id = await relay_outputs_as_zip(
                self.claude, turn.workspace.client, self.http, [delivery.file_id for delivery in owed],
                channel_id=turn.target.channel_id, thread_ts=turn.target.thread_ts, skip=echoes,
                on_upload=started, timeout=self.timeout,
            )
            shared += [file.filename for file in packed]
            await self._note_produced(turn, [(file, zip_id) for file in packed])
        except FileRelayError as error:
            failures = [f"couldn't share the {len(owed)} files as one zip: {error}"]
        except (*SLACK_ERRORS, TimeoutError) as error:
            logger.warning("zip of %d files failed: %s", len(owed), error)
            failures = [f"couldn't share the {len(owed)} files as one zip: {escape_mrkdwn(str(error))}"]
        for delivery in owed:
            await self.store.delivery_done(item_id, delivery.position)
        return failures

    async def _note_produced(self, turn: TurnContext, files: list[tuple[RelayedFile, str]]) -> None:
        """What the code made, for `!files` and `!export` (a failure is a log line: the file is
        in the thread already)."""
        produced = [
            ThreadFile(file.file_id, "out", file.filename, file.size, turn.item.message_ts, slack_file_id or None)
            for file, slack_file_id in files
        ]
        try:
            await self.store.note_thread_files(turn.thread, produced)
        except Exception as error:  # noqa: BLE001 - any driver's failure
            logger.warning("could not note the files shared in %s: %s", turn.thread, error)

    @staticmethod
    async def _shared_already(turn: TurnContext, slack_file_id: str) -> bool:
        """Whether an upload finished before a crash: Slack lists the channels a file is in."""
        try:
            info = (await turn.workspace.client.files_info(file=slack_file_id))["file"]
        except (*SLACK_ERRORS, TimeoutError):
            return False
        shares = info.get("shares") or {}
        return any(turn.target.channel_id in (shares.get(kind) or {}) for kind in ("public", "private"))
