"""One turn: answering one message of a thread (or resetting it), every failure as words.

The queue (`bot/queue.py`) decides when a turn runs; this module only knows how.
"""

from __future__ import annotations

import asyncio
import logging
import time
import json
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from storage import Delivery, InboxMessage, QueueItem, Store, ThreadKey

from .access import AccessControl, Decision
from .budget import Budgets
from .claude import ClaudeTurns, TurnResult
from .files import (
    DEFAULT_TIMEOUT_SECONDS,
    ContainerFile,
    FileRelayError,
    delete_files,
    relay_output_to_slack,
    relay_outputs_as_zip,
    relay_slack_file_to_claude,
    thread_file_ids,
    uploaded_file_ids,
)
from .logs import audit
from .metrics import Metrics
from .reply import SLACK_ERRORS, Reply, ReplyTarget, close_reply, shows_stop_button, tell_requester
from .slack_text import escape_mrkdwn
from .thread_context import earlier_messages
from .threads import is_dm, is_reset_command, is_usage_command, mentions, plain_text, reply_thread_ts, strip_mention
from .usage import Prices, turn_footer, usage_report

logger = logging.getLogger(__name__)

CONTAINER_REPLACED_NOTE = (
    "_Note: this thread's container could not be restored, so this ran in a fresh one."
    " Files from earlier in the thread are gone._"
)
# A refused person is told so at most this often per thread.
REFUSAL_NOTE_INTERVAL_SECONDS = 3600.0
# A message whose turn was cut short this often (each time by a dying process) is not tried again.
MAX_ATTEMPTS = 3
GAVE_UP_NOTE = (
    ":warning: I started on this message {attempts} times and was interrupted every time, so I've"
    " stopped trying. Please send it again, perhaps asking for less at once."
)
INTERRUPTED_NOTE = (
    "_:warning: This answer was interrupted (the bot restarted or lost this thread) and is"
    " being run again below._"
)
STOP_REASON_NOTES = {
    "max_tokens": "_The answer hit the length limit and was cut off. Say “continue” for more._",
    "refusal": "_Claude declined to continue with this request._",
    "model_context_window_exceeded": (
        "_This thread's history no longer fits in the model's context."
        " Type `!reset` to start a fresh container and history._"
    ),
}
STOPPED_NOTE = "_:octagonal_sign: Stopped by {name}. What was said and done until then stays._"
# What Claude reads in the history where a stopped answer ended.
STOPPED_IN_HISTORY = "[{name} stopped this answer here.]"
CONTEXT_TRIMMED_NOTE = (
    "_Note: older code output in this thread was left out of what Claude reads, to fit its"
    " context window. Recent messages are intact; the files are still in the container._"
)


@dataclass
class StopSignal:
    """Set by the queue when someone asks (`!stop`, the Stop button) to stop one running turn."""

    requested: asyncio.Event = field(default_factory=asyncio.Event)
    by: str = ""

    def set(self, user_id: str) -> None:
        if not self.requested.is_set():
            self.by = user_id
            self.requested.set()


class TurnRunner:
    """Answers one message, or resets one thread; owns no order and no state between turns."""

    def __init__(
        self,
        *,
        store: Store,
        claude: ClaudeTurns,
        slack: AsyncWebClient,
        http: aiohttp.ClientSession,
        bot_user_id: str,
        max_message_chars: int,
        max_file_bytes: int,
        access: AccessControl,
        streaming: bool = True,
        follow_ups: str = "all",
        metrics: Metrics | None = None,
        file_timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_separate_files: int = 10,
        show_usage: bool = False,
        prices: Prices = Prices(),
        budgets: Budgets | None = None,
    ) -> None:
        self.follow_ups = follow_ups
        self.metrics = metrics or Metrics()
        self.access = access
        self.store = store
        self.claude = claude
        self.slack = slack
        self.http = http
        self.bot_user_id = bot_user_id
        self.max_message_chars = max_message_chars
        self.max_file_bytes = max_file_bytes
        self.streaming = streaming
        self.file_timeout = file_timeout
        self.max_separate_files = max_separate_files
        # (user, thread) -> when they were last told they may not use the bot there.
        self._refusals_told: dict[tuple[str, ThreadKey], float] = {}
        self.show_usage = show_usage
        self.prices = prices
        self.budgets = budgets or Budgets(store, prices, per_person=None, per_workspace=None)

    async def reset(self, thread: ThreadKey, user_id: str) -> bool:
        """Forget the container, the history and the thread's files, and say so in the thread."""
        conversation = await self.store.load_conversation(thread)
        existed = await self.store.reset(thread)
        audit("reset", thread, user=user_id, existed=existed)
        await delete_files(self.claude.client, thread_file_ids(conversation.history))
        if existed:
            await self.slack.chat_postMessage(
                channel=thread.channel_id,
                thread_ts=reply_thread_ts(thread),
                text=(
                    f":recycle: Fresh start: <@{user_id}> reset this conversation. The next message"
                    " runs in a new container with an empty history."
                ),
            )
        return existed

    async def reset_for(self, item: QueueItem) -> None:
        """A queued reset's turn: reset, then tell the person who asked (their `response_url`)."""
        try:
            existed = await self.reset(item.thread, item.user_id)
        except SLACK_ERRORS as error:
            logger.error("reset of %s done, but its confirmation failed: %s", item.thread, error)
            existed = True
        if item.response_url:
            await tell_requester(item.response_url, reset_outcome(item.thread, existed), item.replace_original)

    # --- one turn ------------------------------------------------------------------------

    async def answer(self, item: QueueItem, stop: StopSignal | None = None) -> None:
        """Answer one message; every failure ends as words in the thread. Setting `stop` ends
        the turn early, as if it had finished there."""
        message = item.as_message()
        target = ReplyTarget(
            channel_id=message.thread.channel_id,
            thread_ts=reply_thread_ts(message.thread),
            team_id=message.thread.team_id,
            user_id=message.user_id,
        )
        started = self.metrics.turn_started(item.message_ts)
        try:
            if item.stop_requested_by and not item.answered:  # stopped, then its process died
                await self._close_stopped_attempt(item, target)
                return
            if item.reply_ts:
                await self._close_earlier_attempt(item, target)
            if item.answered:
                await self._deliver(item, target)
                return
            decision = await self.access.check(message.user_id, message.thread.channel_id)
            if not decision.allowed:
                await self._refuse(message, target, decision)
                return
            if item.attempts > MAX_ATTEMPTS:
                await self._say(target, GAVE_UP_NOTE.format(attempts=item.attempts - 1))
                return
            if is_reset_command(message.text, self.bot_user_id):
                await self.reset(message.thread, message.user_id)
                return
            if is_usage_command(message.text, self.bot_user_id):
                await self._say(target, await self._usage_report(message))
                return
            if not self.access.is_admin(message.user_id):
                spent = await self.budgets.stop_for(message.thread.team_id, message.user_id)
                if spent is not None:
                    audit("budget_stop", message.thread, scope=spent.scope, user=message.user_id)
                    await self._say(target, spent.note)
                    self.metrics.turn_finished("budget", started)
                    return
            text = plain_text(strip_mention(message.text, self.bot_user_id))
            if len(text) > self.max_message_chars:
                await self._say(
                    target,
                    f"That message is {len(text):,} characters long; the limit is"
                    f" {self.max_message_chars:,}. Please attach long text as a file instead.",
                )
                self.metrics.turn_finished("too_long", started)
                return
            await self._run_turn(item, text, target, started, stop or StopSignal())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the worker must survive anything one turn does
            logger.exception("turn for %s failed", message.thread)
            self.metrics.turn_finished("crashed", started)
            await self._say(target, ":warning: Something went wrong on my side while answering. Please try again.")

    async def _run_turn(
        self, item: QueueItem, text: str, target: ReplyTarget, started: float, stop: StopSignal
    ) -> None:
        async def remember_reply(ts: str) -> None:
            await self.store.set_reply_ts(item.id, ts)

        reply = Reply(
            self.slack, target, streaming=self.streaming, on_message=remember_reply, stop_value=stop_value(item)
        )
        reply.open()  # in parallel with what follows: no Slack round trip before the model request
        try:
            await self._run_model_turn(item, text, target, started, stop, reply)
        finally:
            await reply.withdraw_stop_button()

    async def _run_model_turn(
        self, item: QueueItem, text: str, target: ReplyTarget, started: float, stop: StopSignal, reply: Reply
    ) -> None:
        message = item.as_message()
        conversation = await self.store.load_conversation(message.thread)
        arrived = await self._take_in_files(message, target)
        if message.files and not arrived and not text:
            await reply.finish(["_None of the files could go into the container, so there is nothing to do._"])
            self.metrics.turn_finished("no_input", started)
            return
        context = ""
        if self._joins_thread_late(message, conversation.history):
            context = await earlier_messages(
                self.slack, message.thread, message.message_ts, self.bot_user_id, self.access
            )
        earlier_notes = await self._notes_since_last_answer(message)
        if earlier_notes:
            context = "\n".join(part for part in (context, await self._format_notes(earlier_notes)) if part)
        # Where several people can talk, Claude is told who wrote each message.
        author = None if is_dm(message.thread.channel_id) else await self.access.name(message.user_id)
        user_content = user_turn_content(text, arrived, context, author)
        user_files = [(f.filename, f.size) for f in arrived]  # never sent back as outputs
        result = await self.claude.run(
            conversation.history,
            user_content,
            conversation.container_id,
            conversation.container_expires_at,
            self.metrics.first_word(reply, started),
            stop.requested,
        )
        notes = turn_notes(result)
        if result.stopped:
            name = await self.access.name(stop.by)
            notes.append(STOPPED_NOTE.format(name=name))
            result.assistant_content.append({"type": "text", "text": STOPPED_IN_HISTORY.format(name=name)})
            audit("stopped", message.thread, user=stop.by)
        if result.usage.prompt_tokens:
            await self.store.record_usage(message.thread, message.user_id, self.claude.model, result.usage)
        if result.assistant_content:
            user_file_ids = set(uploaded_file_ids([*conversation.history, {"content": user_content}]))
            await self.store.save_turn(
                item.id,
                message.thread,
                [
                    {"role": "user", "content": user_content},
                    {"role": "assistant", "content": result.assistant_content},
                ],
                result.container_id,
                result.container_expires_at,
                outputs=[f for f in dict.fromkeys(result.output_file_ids) if f not in user_file_ids],
                user_files=user_files,
                earlier_history=result.earlier_history,
            )
        if earlier_notes:
            await self.store.drop_notes(message.thread, [note.message_ts for note in earlier_notes])
        try:
            footer = turn_footer(result.usage, self.prices) if self.show_usage and result.usage.prompt_tokens else ""
            await reply.finish(notes, failed=bool(result.error) or result.stopped, usage=footer)
            await self.store.set_reply_ts(item.id, None)  # finished: nothing to close after a crash
        except SLACK_ERRORS as error:  # the files are still owed
            logger.error("could not finish the reply in %s: %s", target.channel_id, error)
        self.metrics.turn_finished(self.metrics.model_turn(result), started)
        if result.assistant_content:
            await self._deliver(replace(item, user_files=user_files), target)

    async def _close_stopped_attempt(self, item: QueueItem, target: ReplyTarget) -> None:
        """Someone stopped this turn and its process died before it finished: never run it again."""
        note = STOPPED_NOTE.format(name=await self.access.name(item.stop_requested_by or ""))
        await self._remove_stop_button(item, target)
        if item.reply_ts:
            await close_reply(target, self.slack, item.reply_ts, note, replace_text=False)
        else:
            await self._say(target, note)

    async def _close_earlier_attempt(self, item: QueueItem, target: ReplyTarget) -> None:
        """An earlier attempt died mid-turn: never leave its reply empty or streaming."""
        await self._remove_stop_button(item, target)
        if item.answered:
            conversation = await self.store.load_conversation(item.thread)
            answer = last_answer_text(conversation.history)
            await close_reply(target, self.slack, item.reply_ts or "", answer, replace_text=True)
        else:
            await close_reply(target, self.slack, item.reply_ts or "", INTERRUPTED_NOTE, replace_text=False)

    async def _remove_stop_button(self, item: QueueItem, target: ReplyTarget) -> None:
        """The separate Stop button a dead attempt left under its streamed reply stops nothing now."""
        if not target.thread_ts or not item.reply_ts:
            return
        value = stop_value(item)
        try:
            after_reply = await self.slack.conversations_replies(
                channel=target.channel_id, ts=target.thread_ts, oldest=item.reply_ts, limit=100
            )
            for message in after_reply.get("messages") or []:
                if message.get("bot_id") and shows_stop_button(message, value):
                    await self.slack.chat_delete(channel=target.channel_id, ts=message["ts"])
        except SLACK_ERRORS as error:
            logger.info("could not remove an interrupted turn's Stop button: %s", error)

    async def _deliver(self, item: QueueItem, target: ReplyTarget) -> None:
        """Share the files an answered turn still owes, each exactly once, even across a crash:
        one by one, or as one zip when there are more than `max_separate_files`."""
        echoes = set(item.user_files)
        owed: list[Delivery] = []
        for delivery in await self.store.pending_deliveries(item.id):
            if delivery.slack_file_id and await self._shared_already(delivery.slack_file_id, target.channel_id):
                await self.store.delivery_done(item.id, delivery.position)
            else:
                owed.append(delivery)
        if len(owed) > self.max_separate_files:
            failures = await self._deliver_zip(item, owed, echoes, target)
        else:
            failures = [await self._deliver_one(item, delivery, echoes, target) for delivery in owed]
        await self._say_problems(target, "Some files couldn't be shared:", [f for f in failures if f])

    async def _deliver_one(
        self, item: QueueItem, delivery: Delivery, echoes: set[tuple[str, int]], target: ReplyTarget
    ) -> str | None:
        """One owed file into the thread; a failure is a line for the thread, never an exception."""

        async def started(slack_file_id: str) -> None:
            await self.store.delivery_started(item.id, delivery.position, slack_file_id)

        failure = None
        try:
            relayed = await relay_output_to_slack(
                self.claude.client,
                self.slack,
                self.http,
                delivery.file_id,
                channel_id=target.channel_id,
                thread_ts=target.thread_ts,
                skip=echoes,
                on_upload=started,
                timeout=self.file_timeout,
            )
            if relayed is not None:
                self.metrics.file_relayed("to_slack", relayed.size)
        except FileRelayError as error:
            failure = str(error)
        except (*SLACK_ERRORS, TimeoutError) as error:
            logger.warning("file relay of %s failed: %s", delivery.file_id, error)
            failure = f"couldn't upload file `{delivery.file_id}`: {escape_mrkdwn(str(error) or 'no answer in time')}"
        await self.store.delivery_done(item.id, delivery.position)
        return failure

    async def _deliver_zip(
        self, item: QueueItem, owed: list[Delivery], echoes: set[tuple[str, int]], target: ReplyTarget
    ) -> list[str]:
        """Many owed files as one zip; every file in it is marked with the zip's Slack id."""

        async def started(slack_file_id: str) -> None:
            for delivery in owed:
                await self.store.delivery_started(item.id, delivery.position, slack_file_id)

        try:
            failures = await relay_outputs_as_zip(
                self.claude.client,
                self.slack,
                self.http,
                [delivery.file_id for delivery in owed],
                channel_id=target.channel_id,
                thread_ts=target.thread_ts,
                skip=echoes,
                on_upload=started,
                timeout=self.file_timeout,
            )
        except FileRelayError as error:
            failures = [f"couldn't share the {len(owed)} files as one zip: {error}"]
        except (*SLACK_ERRORS, TimeoutError) as error:
            logger.warning("zip of %d files failed: %s", len(owed), error)
            failures = [f"couldn't share the {len(owed)} files as one zip: {escape_mrkdwn(str(error))}"]
        for delivery in owed:
            await self.store.delivery_done(item.id, delivery.position)
        return failures

    async def _shared_already(self, slack_file_id: str, channel_id: str) -> bool:
        """Whether an upload finished before a crash: Slack lists the channels a file is in."""
        try:
            info = (await self.slack.files_info(file=slack_file_id))["file"]
        except (*SLACK_ERRORS, TimeoutError):
            return False
        shares = info.get("shares") or {}
        return any(channel_id in (shares.get(kind) or {}) for kind in ("public", "private"))

    async def _notes_since_last_answer(self, message: InboxMessage) -> list[InboxMessage]:
        """With FOLLOW_UPS=mention: what people said in the thread without mentioning the bot,
        except what refused people said."""
        if self.follow_ups != "mention":
            return []
        notes = await self.store.notes_before(message.thread, message.message_ts)
        return [n for n in notes if (await self.access.check(n.user_id, n.thread.channel_id)).allowed]

    async def _format_notes(self, notes: list[InboxMessage]) -> str:
        """What others said in between, each line with its author's name."""
        return "\n".join([f"{await self.access.name(note.user_id)}: {plain_text(note.text)}" for note in notes])

    async def _usage_report(self, message: InboxMessage) -> str:
        thread = await self.store.thread_usage(message.thread)
        person = await self.store.user_usage(message.thread.team_id, message.user_id)
        return usage_report(thread, person, self.prices)

    def _joins_thread_late(self, message: InboxMessage, history: list[dict[str, Any]]) -> bool:
        """A mention inside an existing thread, with no history yet: the thread is its context."""
        is_reply = message.thread.thread_ts not in ("", message.message_ts)
        return is_reply and not history and mentions(message.text, self.bot_user_id)

    async def _take_in_files(self, message: InboxMessage, target: ReplyTarget) -> list[ContainerFile]:
        """Move the files shared with the message into the Files API; say what could not go."""
        arrived: list[ContainerFile] = []
        refused: list[str] = []
        for slack_file in message.files:
            try:
                arrived.append(
                    await relay_slack_file_to_claude(
                        slack_file, slack=self.slack, claude=self.claude.client, http=self.http,
                        max_bytes=self.max_file_bytes, timeout=self.file_timeout,
                    )
                )
                self.metrics.file_relayed("to_container", arrived[-1].size)
            except FileRelayError as error:
                refused.append(str(error))
            except SLACK_ERRORS as error:
                refused.append(f"couldn't look up a shared file: {escape_mrkdwn(str(error))}")
        await self._say_problems(target, "Some files couldn't go into the container:", refused)
        return arrived

    async def _refuse(self, message: InboxMessage, target: ReplyTarget, decision: Decision) -> None:
        """Nothing of the message goes to the model; its author reads why, once in a while."""
        thread = message.thread
        audit("refused", thread, reason=decision.reason, user=message.user_id)
        key, now = (message.user_id, thread), time.monotonic()
        if now - self._refusals_told.get(key, -REFUSAL_NOTE_INTERVAL_SECONDS) < REFUSAL_NOTE_INTERVAL_SECONDS:
            return
        self._refusals_told[key] = now
        try:
            await self.slack.chat_postEphemeral(
                channel=thread.channel_id, user=message.user_id, thread_ts=target.thread_ts, text=decision.note
            )
        except SLACK_ERRORS as error:
            logger.info("could not tell %s they were refused: %s", message.user_id, error)

    async def _say_problems(self, target: ReplyTarget, heading: str, problems: list[str]) -> None:
        if problems:
            await self._say(target, ":warning: " + "\n• ".join([heading, *problems]))

    async def _say(self, target: ReplyTarget, text: str) -> None:
        try:
            await self.slack.chat_postMessage(channel=target.channel_id, thread_ts=target.thread_ts, text=text)
        except SLACK_ERRORS as error:
            logger.error("could not post to %s: %s", target.channel_id, error)


def stop_value(item: QueueItem) -> str:
    """What a Stop button carries: the turn it stops, and its thread."""
    return json.dumps({"item": item.id, "channel": item.thread.channel_id, "thread_ts": item.thread.thread_ts})


def user_turn_content(
    text: str, files: list[ContainerFile], context: str = "", author: str | None = None
) -> list[dict[str, Any]]:
    """The user message for Claude: earlier thread messages, who wrote it, the text, what
    arrived, and a `container_upload` per file."""
    if files:
        listing = ", ".join(f"{f.filename} ({f.size:,} bytes)" for f in files)
        text = f"{text}\n\n[Files shared with this message, now in the container: {listing}]".strip()
    text = text or "(empty message)"
    if author:
        text = f"{author}: {text}"
    content: list[dict[str, Any]] = []
    if context:
        content.append({"type": "text", "text": f"Earlier messages in this Slack thread, for context:\n{context}"})
    content.append({"type": "text", "text": text})
    content.extend({"type": "container_upload", "file_id": f.file_id} for f in files)
    return content


def turn_notes(result: TurnResult) -> list[str]:
    """What the thread should be told besides the answer itself."""
    notes = []
    if result.container_replaced:
        notes.append(CONTAINER_REPLACED_NOTE)
    if result.context_trimmed:
        notes.append(CONTEXT_TRIMMED_NOTE)
    if result.stop_reason in STOP_REASON_NOTES:
        notes.append(STOP_REASON_NOTES[result.stop_reason])
    if result.error:
        notes.append(f":warning: {result.error}")
    return notes


def last_answer_text(history: list[dict[str, Any]]) -> str:
    """The text of the last assistant message: what an answered turn showed."""
    for message in reversed(history):
        if message.get("role") == "assistant" and isinstance(message.get("content"), list):
            return "".join(
                block.get("text", "") for block in message["content"] if isinstance(block, dict) and block.get("type") == "text"
            ).strip() or "_(no text in the answer)_"
    return "_(no text in the answer)_"


def reset_outcome(thread: ThreadKey, existed: bool) -> str:
    """What the person who asked for a reset is told when it has happened."""
    if not existed:
        where = "this conversation" if thread.thread_ts == "" else "that thread"
        return f"threadbox has no conversation in {where}, so there is nothing to reset."
    return ":recycle: Done: the next message there starts in a fresh container with an empty history."
