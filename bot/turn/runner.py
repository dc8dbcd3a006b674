"""One turn: answering one message of a thread, every failure as words.

The queue (`bot/queue.py`) decides when a turn runs and builds its `TurnContext`; this module
runs it: recovery from an earlier attempt, the checks, the in-thread commands, then the model
turn with its live reply, and the files the answer owes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, cast

from anthropic.types import SkillParams

from storage import DATABASE_OUTAGES, LeaseLost, QueueItem, Store, ThreadFile

from ..errors import SLACK_ERRORS, NotStored
from ..model.files import delete_files
from ..model.transcript import stored, uploaded_file_ids
from ..model.turns import ClaudeTurns, TurnResult
from ..ops.logs import audit
from ..ops.metrics import Metrics
from ..outbound.blocks import feedback_buttons
from ..outbound.reply import Reply
from ..outbound.text import escape_mrkdwn
from ..policy.usage import Prices, turn_footer
from ..schedules.commands import run_answered
from ..workspaces import Workspace
from .checks import TurnChecks
from .commands import InThreadCommands
from .context import StopSignal, TurnContext
from .deliveries import OwedFiles
from .prompt import Prompts, request_text, user_turn_content
from .recovery import INTERRUPTED_NOTE, STOPPED_NOTE, close_earlier_attempt, close_stopped_attempt
from .shared_files import ContainerFile, FileIntake
from .spending import spending
from .unshared_files import unshared_files, unshared_note

logger = logging.getLogger(__name__)

# What ends a turn that then runs again: its process shuts down or lost the thread, or the
# database is away for a moment.
KEPT_OPEN: tuple[type[BaseException], ...] = (NotStored, *DATABASE_OUTAGES)
INTERRUPTIONS: tuple[type[BaseException], ...] = (asyncio.CancelledError, LeaseLost, *KEPT_OPEN)

CONTAINER_REPLACED_NOTE = (
    "_Note: this thread's container could not be restored, so this ran in a fresh one."
    " Files from earlier in the thread are gone._"
)
STOP_REASON_NOTES = {
    "max_tokens": "_The answer hit the length limit and was cut off. Say “continue” for more._",
    "model_context_window_exceeded": (
        "_This thread's history no longer fits in the model's context."
        " Type `!reset` to start a fresh container and history._"
    ),
}
# What Claude reads in the history where a stopped answer ended.
STOPPED_IN_HISTORY = "[{name} stopped this answer here.]"
WINDOW_TRIMMED_NOTE = (
    "_Note: older code output in this thread was left out of what Claude reads, to fit its"
    " context window. Recent messages are intact; the files are still in the container._"
)
CRASHED_NOTE = ":warning: Something went wrong on my side while answering. Please try again."
# Storing a finished turn is tried again after these pauses (about half a minute in all).
PERSIST_RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
NO_INPUT_NOTE = "_None of the files could go into the container, so there is nothing to do._"
REFUSED_NOTE = "_Claude declined to continue with this request._"
# What Claude reads in the history where a turn failed before it could answer.
FAILED_IN_HISTORY = "[This message got no answer: {error}]"


class TurnRunner:
    """Answers one queue item's message; owns no order and no state between turns."""

    def __init__(
        self,
        *,
        store: Store,
        claude: ClaudeTurns,
        intake: FileIntake,
        owed: OwedFiles,
        prompts: Prompts,
        checks: TurnChecks,
        commands: InThreadCommands,
        metrics: Metrics,
        streaming: bool,
        task_display: str,
        show_usage: bool,
        prices: Prices,
    ) -> None:
        self.store = store
        self.claude = claude
        self.intake = intake
        self.owed = owed
        self.prompts = prompts
        self.checks = checks
        self.commands = commands
        self.metrics = metrics
        self.streaming = streaming
        self.task_display = task_display
        self.show_usage = show_usage
        self.prices = prices

    async def run(self, item: QueueItem, workspace: Workspace, stop: StopSignal) -> None:
        """The turn of one message item: its `TurnContext` is built here, as it starts."""
        turn = await TurnContext.for_item(item, workspace, stop, self.metrics.turn_started(item.message_ts))
        await self.answer(turn)

    async def answer(self, turn: TurnContext) -> None:
        """Answer one message; every failure ends as words in the thread. Setting the turn's
        stop signal ends it early, as if it had finished there."""
        item = turn.item
        try:
            if item.stop_requested_by and not item.answered:  # stopped, then its process died
                await close_stopped_attempt(turn)
                return
            if item.reply_ts:
                await close_earlier_attempt(turn, self.store)
            if item.answered:
                await self.owed.deliver(turn, item.user_files)
                return
            if await self.checks.access(turn) or not await self._in_bots_thread(turn):
                return
            if await self.checks.attempts(turn):
                return
            if await self.commands.run(turn):
                return
            if await self.checks.budget(turn) or await self.checks.length(turn):
                return
            await self._run_turn(turn)
            await run_answered(self.store, turn)
        except (asyncio.CancelledError, LeaseLost):  # another process has the thread now
            raise
        except KEPT_OPEN:  # the item stays open: taken again once the database is back
            raise
        except Exception:  # noqa: BLE001 - the worker must survive anything one turn does
            logger.exception("turn for %s failed", item.thread)
            self.metrics.turn_finished("crashed", turn.started)
            await turn.say(CRASHED_NOTE)

    async def _in_bots_thread(self, turn: TurnContext) -> bool:
        """A message addressed to the bot makes its thread the bot's (its person was just let
        in); a plain reply is answered only in a thread that is the bot's already (one whose
        first message was refused never became it)."""
        if turn.item.addressed:
            await self.store.open_conversation(turn.item.thread)
            return True
        return await self.store.owns_conversation(turn.item.thread)

    async def _run_turn(self, turn: TurnContext) -> None:
        recorded: set[str] = set()

        async def remember_reply(ts: str) -> None:
            await persist("the reply's message", self.store.set_reply_ts, turn.item.id, ts)
            recorded.add(ts)

        def stopped_in_slack() -> None:  # Slack's own stop control: as `!stop` by the person it answers
            turn.stop.set(turn.target.user_id)

        reply = Reply(
            turn.workspace.client, turn.target, streaming=self.streaming, task_display=self.task_display,
            support=turn.workspace.streams,
            on_message=remember_reply, on_stopped=stopped_in_slack, stop_value=turn.stop_value,
            feedback=feedback_buttons(turn.thread, turn.item.id, turn.settings.model.model),
        )
        reply.open()  # in parallel with what follows: no Slack round trip before the model request
        try:
            await self._run_model_turn(turn, reply)
        except INTERRUPTIONS:
            # The turn runs again, and that attempt closes the reply whose message is stored;
            # one the database never heard of (it was away) only this turn can close.
            if reply.message_ts is not None and reply.message_ts not in recorded:
                await asyncio.shield(reply.interrupt(INTERRUPTED_NOTE))
            raise
        finally:
            reply.release()

    async def _run_model_turn(self, turn: TurnContext, reply: Reply) -> None:
        item, thread = turn.item, turn.thread
        text = request_text(turn)
        conversation = await self.store.load_conversation(thread)
        arrived = await self.intake.take_in(turn)
        if item.files and not arrived and not text:
            await reply.finish([NO_INPUT_NOTE])
            self.metrics.turn_finished("no_input", turn.started)
            return
        earlier, notes_used = await self.prompts.earlier(turn, conversation.history)
        inherited = [ContainerFile(f["file_id"], f["name"], int(f["size"])) for f in conversation.inherited_files or []]
        user_content = user_turn_content(text, arrived, earlier, await self.prompts.author(turn), inherited)
        user_files = [(f.filename, f.size) for f in [*inherited, *arrived]]  # never sent back as outputs
        # A thread keeps the skills it started with until it is reset: the same list on every
        # turn keeps its prompt cache and its container as they were.
        model = turn.settings.model
        if conversation.skills is not None:
            model = replace(model, skills=tuple(cast(list[SkillParams], conversation.skills)))
        guard = spending(self.store, self.checks.budgets, turn)
        result = await self.claude.run(
            model,
            stored(conversation.history),
            user_content,
            conversation.container_id,
            conversation.container_expires_at,
            self.metrics.first_word(reply, turn.started),
            turn.stop.requested,
            guard,
        )
        if guard is not None:
            await guard.release()
        notes = turn_notes(result)
        if changed := turn.settings.changes_since(conversation.settings_seen):
            notes.insert(0, changed)
        if result.stopped:
            name = await turn.workspace.access.name(turn.stop.by)
            notes.append(STOPPED_NOTE.format(name=name))
            result.assistant_content.append({"type": "text", "text": STOPPED_IN_HISTORY.format(name=name)})
            audit("stopped", thread, user=turn.stop.by)
        if result.usage.prompt_tokens:
            await persist("the usage", self.store.record_usage, thread, item.user_id, model.model, result.usage)
        if result.refusal is not None:  # replayed, the refused exchange would be refused again
            await delete_files(self.claude.client, [f.file_id for f in arrived])
        else:
            if not result.assistant_content:  # what it was asked stays, and the files it shared
                result.assistant_content.append({"type": "text", "text": FAILED_IN_HISTORY.format(error=result.error)})
            user_file_ids = set(uploaded_file_ids([*conversation.history, {"content": user_content}]))
            await persist(
                "the answer",
                self.store.save_turn,
                item.id,
                thread,
                [
                    {"role": "user", "content": user_content},
                    {"role": "assistant", "content": result.assistant_content},
                ],
                result.container_id,
                result.container_expires_at,
                outputs=[f for f in dict.fromkeys(result.output_file_ids) if f not in user_file_ids],
                user_files=user_files,
                earlier_history=result.earlier_history,
                lease=item.lease,
                skills=list(model.skills),
                settings_seen=turn.settings.seen,
                inherited_taken=bool(inherited),
            )
            shared_in = [
                ThreadFile(f.file_id, "in", f.filename, f.size, item.message_ts, f.slack_file_id) for f in arrived
            ]
            await persist("the thread's files", self.store.note_thread_files, thread, shared_in)
        if notes_used:
            await self.store.drop_notes(thread, [note.message_ts for note in notes_used])
        try:
            footer = turn_footer(result.usage, self.prices) if self.show_usage and result.usage.prompt_tokens else ""
            await reply.finish(notes, failed=bool(result.error) or result.stopped, usage=footer)
            await self.store.set_reply_ts(item.id, None)  # finished: nothing to close after a crash
        except SLACK_ERRORS as error:  # the files are still owed
            logger.error("could not finish the reply in %s: %s", turn.target.channel_id, error)
        self.metrics.turn_finished(self.metrics.model_turn(result), turn.started)
        if result.refusal is None:
            shared = await self.owed.deliver(turn, user_files)
            own = [name for name, _ in user_files]
            note = unshared_note(unshared_files(result.assistant_content, result.text, shared, own))
            if note:
                await turn.say(note)


async def persist(what: str, write: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any) -> None:
    """A write of a finished turn, asked again while the database is away for a moment: the
    answer is shown already, and running the model again would show it twice. When it still
    fails, `NotStored`: the message stays open and runs again, nothing is lost."""
    for delay in PERSIST_RETRY_SECONDS:
        try:
            await write(*args, **kwargs)
            return
        except (asyncio.CancelledError, LeaseLost):
            raise
        except Exception as error:  # noqa: BLE001 - any driver's failure; asked again below
            logger.warning("could not store %s (%s); trying again in %g s", what, error, delay)
            await asyncio.sleep(delay)
    try:
        await write(*args, **kwargs)
    except (asyncio.CancelledError, LeaseLost):
        raise
    except Exception as error:  # noqa: BLE001 - any driver's failure
        raise NotStored(what) from error


def turn_notes(result: TurnResult) -> list[str]:
    """What the thread should be told besides the answer itself."""
    notes = []
    if result.container_replaced:
        notes.append(CONTAINER_REPLACED_NOTE)
    if result.window_trimmed:
        notes.append(WINDOW_TRIMMED_NOTE)
    if result.refusal is not None:
        notes.append(f"{REFUSED_NOTE} {escape_mrkdwn(result.refusal)}".strip())
    if result.budget_stop is not None:
        notes.append(result.budget_stop)
    if result.stop_reason in STOP_REASON_NOTES:
        notes.append(STOP_REASON_NOTES[result.stop_reason or ""])
    if result.error:
        notes.append(f":warning: {result.error}")
    return notes
