"""Bolt listeners: turn Slack events, commands, shortcuts and buttons into engine calls."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import AsyncSetSuggestedPrompts
from slack_bolt.context.set_title.async_set_title import AsyncSetTitle
from slack_sdk.web.async_client import AsyncWebClient

from storage import InboxMessage, ResetRequest, Store, ThreadKey

from . import payloads
from .reply import SLACK_ERRORS, STOP_ACTION_ID
from .threads import is_dm, is_stop_command, mentions, thread_from_link, thread_of
from .access import NOT_IN_CONVERSATION, AccessControl, Decision
from .home import HOME_RESET_ACTION_ID, HomeTab, Notice
from .logs import audit
from .queue import TurnQueue
from .turn import reset_outcome

logger = logging.getLogger(__name__)

# Message subtypes that are a person talking; edits, joins, deletions and bot posts are not.
ANSWERED_SUBTYPES = {None, "file_share", "thread_broadcast"}
RESET_ACTION_ID = "reset_thread"
RESET_SHORTCUT_ID = "reset_container"
RESET_COMMAND = "/reset"
MAX_LISTED_THREADS = 10
MENTION_EVENT = "app_mention"
MESSAGE_EVENT = "message"
HOME_OPENED_EVENT = "app_home_opened"
# Bolt's Assistant middleware handles these, for the app's assistant view.
ASSISTANT_EVENTS = ("assistant_thread_started", "assistant_thread_context_changed")
# What the manifest must declare (a test holds the two together).
HANDLED_EVENTS = (MENTION_EVENT, MESSAGE_EVENT, HOME_OPENED_EVENT, *ASSISTANT_EVENTS)
HANDLED_COMMANDS = (RESET_COMMAND,)
HANDLED_SHORTCUTS = (RESET_SHORTCUT_ID,)
NOTHING_TO_STOP_NOTE = "Nothing is running in this thread right now, so there is nothing to stop."
ALREADY_FINISHED_NOTE = "That answer has already finished."
OUT_OF_DATE_BUTTON_NOTE = "That button is out of date; here is your Home tab as it is now."
QUEUED_RESET_NOTE = (
    ":hourglass_flowing_sand: That thread is busy: the reset is queued and happens as soon as"
    " what was asked before it is answered (anything sent after it runs in the fresh container)."
)
ASSISTANT_GREETING = (
    "Hi! I write and run code for you in a sandbox that stays with this thread: files and"
    " state carry over from one message to the next. Ask for an analysis, attach files, or"
    " pick a prompt below."
)
SUGGESTED_PROMPTS = [
    {"title": "Analyze a file", "message": "I'll attach a CSV: summarize it and chart the most interesting columns."},
    {"title": "Run some Python", "message": "Compute the first 50 prime numbers and show me the code you ran."},
    {"title": "Make a chart", "message": "Plot sin(x) and cos(x) from 0 to 2π and send me the PNG."},
]


def register_listeners(
    app: AsyncApp, engine: TurnQueue, store: Store, access: AccessControl, *, home: HomeTab, follow_ups: str = "all"
) -> None:
    """Wire every Slack surface the manifest declares to the engine."""
    app.error(payloads.on_unhandled_error)

    async def stop_from_message(message: InboxMessage, client: AsyncWebClient) -> None:
        """`!stop`: never queued behind the turn it stops; an ephemeral word when there is none."""
        outcome = await _request_stop(engine, access, message.thread, message.user_id, message_ts=message.message_ts)
        if outcome in ("stopping", "duplicate"):
            return
        text = NOTHING_TO_STOP_NOTE if outcome == "idle" else outcome
        try:
            await client.chat_postEphemeral(
                channel=message.thread.channel_id, user=message.user_id,
                thread_ts=message.thread.thread_ts or None, text=text,
            )
        except SLACK_ERRORS as error:
            logger.info("could not answer a stop request: %s", error)

    @app.event(MENTION_EVENT)
    async def on_mention(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        message = inbox_message(event, context)
        if message is None:
            return
        if is_stop_command(message.text, context.bot_user_id or ""):
            await stop_from_message(message, client)
            return
        await engine.submit(message, starts_conversation=True)

    @app.event(MESSAGE_EVENT)
    async def on_message(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
        message = inbox_message(event, context)
        if message is None:
            return
        bot_user_id = context.bot_user_id or ""
        # A mention's app_mention twin may arrive first or not at all; the queue accepts the
        # message once, whichever comes.
        addressed = is_dm(event["channel"], event.get("channel_type")) or mentions(message.text, bot_user_id)
        in_our_thread = not addressed and bool(event.get("thread_ts")) and await store.has_conversation(message.thread)
        if not (addressed or in_our_thread):
            return
        if is_stop_command(message.text, bot_user_id):
            await stop_from_message(message, client)
        elif in_our_thread and follow_ups == "mention":  # context for the next message that mentions the bot
            await store.add_note(message)
        else:
            await engine.submit(message, starts_conversation=addressed)

    assistant = AsyncAssistant()

    @assistant.thread_started
    async def on_assistant_thread_started(
        payload: dict[str, Any], say: AsyncSay, set_suggested_prompts: AsyncSetSuggestedPrompts
    ) -> None:
        if payloads.assistant_thread(payload) is None:
            payloads.ignore_malformed("assistant_thread_started")
            return
        try:
            await say(ASSISTANT_GREETING)
            await set_suggested_prompts(prompts=SUGGESTED_PROMPTS, title="Try one of these:")
        except SLACK_ERRORS as error:
            logger.warning("could not greet a new assistant thread: %s", error)

    @assistant.thread_context_changed
    async def on_assistant_context_changed(payload: dict[str, Any]) -> None:
        """The channel a person views beside the assistant; threadbox does not use it."""
        logger.debug("assistant thread context changed")

    @assistant.user_message
    async def on_assistant_message(
        payload: dict[str, Any], context: AsyncBoltContext, set_title: AsyncSetTitle, client: AsyncWebClient
    ) -> None:
        message = inbox_message(payload, context)
        if message is None:
            return
        if is_stop_command(message.text, context.bot_user_id or ""):
            await stop_from_message(message, client)
            return
        is_new = not await store.has_conversation(message.thread)
        if await engine.submit(message, starts_conversation=True) and is_new:
            await set_title(thread_title(message.text))

    app.use(assistant)

    @app.command(RESET_COMMAND)
    async def on_reset_command(
        ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        fields = payloads.command_fields(command)
        if fields is None:
            await payloads.respond_safely(respond, command, payloads.UNREADABLE_NOTE)
            return
        respond = _safe(respond, command)
        team_id, channel_id, user_id, text = team_id_of(context), fields.channel_id, fields.user_id, fields.text
        response_url = payloads.response_url(command)
        if text:
            thread = thread_from_link(team_id, text)
            if thread is None:
                await respond(
                    "That doesn't look like a link to a thread. Use *Copy link* on a message in"
                    " the thread, then `/reset <link>`."
                )
                return
            answer = await _request_reset(engine, store, access, thread, user_id, response_url)
        elif is_dm(channel_id):
            thread = ThreadKey(team_id, channel_id, "")
            answer = await _request_reset(engine, store, access, thread, user_id, response_url)
        else:
            decision = await access.check(user_id, channel_id)
            if not decision.allowed:
                audit("refused", reason=decision.reason, user=user_id, team=team_id, channel=channel_id, action="reset")
                await respond(decision.note)
                return
            threads = await store.active_threads(team_id, channel_id, user_id, MAX_LISTED_THREADS)
            await respond(**thread_picker(threads))
            return
        if answer.text:
            await respond(answer.text)

    @app.action(RESET_ACTION_ID)
    async def on_reset_button(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], respond: AsyncRespond,
        context: AsyncBoltContext,
    ) -> None:
        await ack()
        respond = _safe(respond, body)
        fields = payloads.reset_button_fields(action, body)
        if fields is None:
            await respond("That button is out of date; run `/reset` again.", replace_original=True)
            return
        thread = ThreadKey(team_id_of(context), fields.channel_id, fields.thread_ts)
        answer = await _request_reset(
            engine, store, access, thread, fields.user_id, payloads.response_url(body), replace_original=True
        )
        if answer.text:
            await respond(answer.text, replace_original=True)

    @app.action(STOP_ACTION_ID)
    async def on_stop_button(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], respond: AsyncRespond,
        context: AsyncBoltContext, client: AsyncWebClient,
    ) -> None:
        await ack()
        respond = _safe(respond, body)
        fields = payloads.reset_button_fields(action, body)
        if fields is None or fields.item_id is None:
            await respond("That button is out of date.", replace_original=False)
            return
        thread = ThreadKey(team_id_of(context), fields.channel_id, fields.thread_ts)
        outcome = await _request_stop(engine, access, thread, fields.user_id, item_id=fields.item_id)
        if outcome == "stopping":
            return
        await respond(ALREADY_FINISHED_NOTE if outcome == "idle" else outcome, replace_original=False)
        if outcome == "idle" and fields.message_ts and _is_stop_offer(body):
            # A Stop button left by a process that died: it has nothing left to stop.
            try:
                await client.chat_delete(channel=fields.channel_id, ts=fields.message_ts)
            except SLACK_ERRORS as error:
                logger.info("could not remove a stale Stop button: %s", error)

    @app.shortcut(RESET_SHORTCUT_ID)
    async def on_reset_shortcut(
        ack: AsyncAck, shortcut: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext
    ) -> None:
        await ack()
        respond = _safe(respond, shortcut)
        fields = payloads.shortcut_fields(shortcut)
        if fields is None:
            await respond("I couldn't tell which thread this message belongs to.")
            return
        thread = thread_of(team_id_of(context), fields.message)
        answer = await _request_reset(engine, store, access, thread, fields.user_id, payloads.response_url(shortcut))
        if answer.text:
            await respond(answer.text)

    async def publish_home_tab(event: dict[str, Any], context: AsyncBoltContext) -> None:
        opened = payloads.home_opened(event)
        if opened is None:
            payloads.ignore_malformed(HOME_OPENED_EVENT)
            return
        if opened.tab == "home":  # the Messages tab is Slack's own
            await home.publish(team_id_of(context), opened.user_id, context.bot_user_id or "")

    # Nothing to store: Slack is acknowledged at once and the tab is built after (a lazy
    # listener), however many channels it has to look at.
    app.event(HOME_OPENED_EVENT)(ack=_acknowledge, lazy=[publish_home_tab])

    @app.action(HOME_RESET_ACTION_ID)
    async def on_home_reset_button(
        ack: AsyncAck, action: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """A Home tab button carries no response_url: the outcome shows on the republished tab."""
        await ack()
        team_id, bot_user_id = team_id_of(context), context.bot_user_id or ""
        user_id = payloads.button_user(body)
        if user_id is None:
            payloads.ignore_malformed("Home tab button")
            return
        fields = payloads.reset_button_fields(action, body)
        if fields is None:
            await home.publish(team_id, user_id, bot_user_id, Notice(OUT_OF_DATE_BUTTON_NOTE))
            return
        thread = ThreadKey(team_id, fields.channel_id, fields.thread_ts)
        answer = await _request_reset(engine, store, access, thread, user_id, response_url=None)
        notice = Notice(answer.text or "", thread if answer.queued else None)
        await home.publish(team_id, user_id, bot_user_id, notice)


async def _acknowledge(ack: AsyncAck) -> None:
    await ack()


def _safe(respond: AsyncRespond, body: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    """`respond` that never raises: a payload without a usable response_url is logged instead."""

    async def safe_respond(*args: Any, **kwargs: Any) -> None:
        await payloads.respond_safely(respond, body, *args, **kwargs)

    return safe_respond


@dataclass(frozen=True)
class ResetAnswer:
    """What the person who asked for a reset is told right away (None: the reset's own turn
    tells them through their `response_url` in a moment), and whether it was queued at all."""

    text: str | None
    queued: bool = False


async def _request_reset(
    engine: TurnQueue,
    store: Store,
    access: AccessControl,
    thread: ThreadKey,
    user_id: str,
    response_url: str | None,
    replace_original: bool = False,
) -> ResetAnswer:
    """Queue a reset in the thread's order, for every form of reset alike.

    Someone who cannot see the thread hears exactly what they would for a thread with no
    conversation. Without a `response_url`, the answer always has words.
    """
    refusal = await _refusal(access, thread, user_id, "reset")
    if refusal is not None:
        outside = refusal.reason == NOT_IN_CONVERSATION
        return ResetAnswer(reset_outcome(thread, existed=False) if outside else refusal.note)
    if not await store.has_conversation(thread):
        return ResetAnswer(reset_outcome(thread, existed=False))
    queued = await engine.request_reset(ResetRequest(thread, user_id, response_url, replace_original))
    if queued.waits:
        return ResetAnswer(QUEUED_RESET_NOTE, queued=True)
    return ResetAnswer(None if response_url else reset_outcome(thread, existed=True), queued=True)


async def _request_stop(
    engine: TurnQueue,
    access: AccessControl,
    thread: ThreadKey,
    user_id: str,
    *,
    message_ts: str | None = None,
    item_id: int | None = None,
) -> str:
    """Ask for the thread's running turn to stop: the store's outcome, or why the person may not."""
    refusal = await _refusal(access, thread, user_id, "stop")
    if refusal is not None:
        return refusal.note if refusal.reason != NOT_IN_CONVERSATION else NOTHING_TO_STOP_NOTE
    outcome = await engine.request_stop(thread, user_id, message_ts=message_ts, item_id=item_id)
    if outcome == "stopping":
        audit("stop_requested", thread, user=user_id)
    return outcome


async def _refusal(access: AccessControl, thread: ThreadKey, user_id: str, action: str) -> Decision | None:
    """Why the person may not reset or stop the thread (audited), or None when they may.

    Someone outside its conversation is answered as for a thread with nothing going on, so
    nobody learns what happens in a channel they cannot see."""
    decision = await access.check_thread(user_id, thread)
    if decision.allowed:
        return None
    audit("refused", thread, reason=decision.reason, action=action, user=user_id)
    return decision


def _is_stop_offer(body: dict[str, Any]) -> bool:
    """Whether the pressed button is on a message of its own (a streamed reply's Stop button)."""
    blocks = body.get("message", {}).get("blocks") if isinstance(body.get("message"), dict) else None
    return isinstance(blocks, list) and not any(isinstance(b, dict) and b.get("type") == "markdown" for b in blocks)


def thread_picker(threads: list[Any]) -> dict[str, Any]:
    """The ephemeral answer to a bare `/reset` in a channel: the user's threads, a button each."""
    if not threads:
        return {
            "text": (
                "You have no active threadbox threads in this channel. To reset a thread, type"
                " `!reset` in it, use the *Reset container* message shortcut, or run"
                " `/reset <link to the thread>`."
            )
        }
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Your threadbox threads here:*"}}
    ]
    for summary in threads:
        excerpt = " ".join(summary.last_text.split())[:140] or "(no text)"
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"_{excerpt}_"},
                "accessory": {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Reset"},
                    "style": "danger",
                    "action_id": RESET_ACTION_ID,
                    "value": json.dumps(
                        {"channel": summary.thread.channel_id, "thread_ts": summary.thread.thread_ts}
                    ),
                },
            }
        )
    return {"text": "Your threadbox threads in this channel", "blocks": blocks}


def thread_title(text: str, limit: int = 60) -> str:
    """An assistant thread's title: the start of its first message."""
    line = " ".join(text.split()) or "New conversation"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def team_id_of(context: AsyncBoltContext) -> str:
    """The workspace (or, for org-wide installs, the organisation) a payload came from."""
    return payloads.string(context, "team_id") or payloads.string(context, "enterprise_id") or ""


def is_from_a_person(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """Never answer bots (ourselves included) or edits, joins and other housekeeping."""
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    if event.get("subtype") not in ANSWERED_SUBTYPES:
        return False
    return bool(event.get("user")) and event.get("user") != bot_user_id


def inbox_message(event: dict[str, Any], context: AsyncBoltContext) -> InboxMessage | None:
    """The message a person sent, or None for bots, housekeeping and malformed payloads."""
    if not payloads.is_well_formed_message(event):
        payloads.ignore_malformed("message event")
        return None
    if not is_from_a_person(event, context.bot_user_id):
        return None
    return InboxMessage(
        thread=thread_of(team_id_of(context), event),
        message_ts=event["ts"],
        user_id=str(event["user"]),
        text=str(event.get("text") or ""),
        files=payloads.shared_files(event),
    )
