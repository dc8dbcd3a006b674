"""`!schedule <when> <request>` and `!schedules` in a thread, the runs' outcomes (a run its
person may no longer make is skipped; three in a row pause the schedule), and the buttons'
pause, resume and delete."""

from __future__ import annotations

import json
import time
from typing import Any

from storage import Schedule, Store

from ..ops.logs import audit
from ..outbound.blocks import Block, context, section
from ..outbound.text import escape_mrkdwn
from ..turn.context import TurnContext
from ..workspaces import Workspace
from .clock import ScheduleClock, rule_of
from .when import WhenError, local_time, read_schedule, zone

SCHEDULE_ACTIONS = ("schedule_pause", "schedule_resume", "schedule_delete")
MAX_SKIPPED = 3
NO_SCHEDULES_NOTE = ":calendar: This thread has no schedules. `!schedule every day at 09:00 <request>` makes one."
CREATED_NOTE = (
    ":calendar: Scheduled (#{id}): “{request}”, {rule} ({tz}). Next run: *{next}*. Each run is a turn of"
    " this thread from <@{user}>: in its container, with its history, answered here and counted in your usage"
    " and budget. A reset does not cancel it: the next run then starts in the fresh container."
    " `!schedules` lists this thread's schedules."
)
PAUSED_NOTE = (
    ":double_vertical_bar: Your schedule #{id} (“{request}”) was skipped {times} times in a row ({why}),"
    " so it is paused. Resume it from `!schedules` once it can run again."
)


class Scheduling:
    """What `!schedule` needs: the store, the clock to wake, and the limits."""

    def __init__(self, store: Store, clock: ScheduleClock, *, min_interval_seconds: float, per_person: int) -> None:
        self.store = store
        self.clock = clock
        self.min_interval_seconds = min_interval_seconds
        self.per_person = per_person

    async def schedule(self, turn: TurnContext, text: str) -> None:
        user, now = turn.item.user_id, time.time()
        tz = zone(await turn.workspace.access.time_zone(user))
        try:
            rule, request = read_schedule(text, tz, now)
            gap = rule.shortest_gap(now)
            if gap is not None and gap < self.min_interval_seconds:
                raise WhenError(
                    f"that runs every {gap / 60:g} minutes at times; a schedule may run at most every"
                    f" {self.min_interval_seconds / 60:g} minutes"
                )
            first = rule.first(now)
        except WhenError as error:
            await turn.say(f":calendar: {error}")
            return
        if await self.store.count_schedules_of(turn.thread.team_id, user) >= self.per_person:
            await turn.say(f":calendar: You have {self.per_person} schedules already, the most one person may have;"
                           " delete one from `!schedules` first.")
            return
        made = await self.store.create_schedule(turn.thread, user, request, rule.kind, rule.spec, tz, first)
        audit("schedule_created", turn.thread, user=user, schedule=made.id, kind=rule.kind, spec=rule.spec, tz=tz)
        self.clock.wake()
        await turn.say(CREATED_NOTE.format(id=made.id, request=escape_mrkdwn(request), rule=describe(made), tz=tz,
                                           next=local_time(first, tz), user=user))

    async def list_schedules(self, turn: TurnContext) -> None:
        schedules = await self.store.thread_schedules(turn.thread)
        if not schedules:
            await turn.say(NO_SCHEDULES_NOTE)
            return
        blocks = schedules_blocks(schedules)
        text = "\n".join(summary(s) for s in schedules)
        await turn.workspace.client.chat_postMessage(
            channel=turn.target.channel_id, thread_ts=turn.target.thread_ts, text=text, blocks=blocks
        )


def describe(schedule: Schedule) -> str:
    if schedule.kind == "every":
        seconds = int(schedule.spec)
        return f"every {seconds // 3600} hours" if seconds % 3600 == 0 else f"every {seconds // 60} minutes"
    if schedule.kind == "once":
        return f"once, at {local_time(float(schedule.spec), schedule.tz)}"
    return f"on the cron schedule `{schedule.spec}`"


def summary(schedule: Schedule) -> str:
    """One schedule in a line: what, when, next run, who, last outcome."""
    nxt = local_time(schedule.next_at, schedule.tz) if schedule.next_at and schedule.state == "active" else None
    state = {"active": f"next run {nxt}", "paused": "paused", "done": "done"}.get(schedule.state, schedule.state)
    last = f"; last run: {schedule.last_outcome}" if schedule.last_outcome else ""
    return (f"*#{schedule.id}* “{escape_mrkdwn(schedule.request[:200])}”, {describe(schedule)} ({schedule.tz}):"
            f" {state}; by <@{schedule.user_id}>{last}")


def schedules_blocks(schedules: list[Schedule]) -> list[Block]:
    blocks: list[Block] = []
    for schedule in schedules[:20]:
        blocks.append(section(summary(schedule)))
        if schedule.state in ("active", "paused"):
            toggle = ("schedule_pause", "Pause") if schedule.state == "active" else ("schedule_resume", "Resume")
            blocks.append({"type": "actions", "block_id": f"schedule-{schedule.id}", "elements": [
                _button(*toggle, schedule), _button("schedule_delete", "Delete", schedule, style="danger"),
            ]})
    if len(schedules) > 20:
        blocks.append(context(f"…and {len(schedules) - 20} more."))
    return blocks


def _button(action_id: str, label: str, schedule: Schedule, style: str | None = None) -> Block:
    button: Block = {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label},
                     "value": json.dumps({"schedule": schedule.id})}
    if style:
        button["style"] = style
    return button


async def run_skipped(store: Store, turn: TurnContext, why: str) -> None:
    """A scheduled run its person may not make now: skipped, and paused after three in a row."""
    schedule_id = turn.item.schedule_id
    if schedule_id is None:
        return
    skipped = await store.note_schedule_outcome(schedule_id, f"skipped ({why})", skipped=True)
    audit("schedule_skipped", turn.thread, schedule=schedule_id, reason=why, times=skipped)
    if skipped >= MAX_SKIPPED and await store.set_schedule_state(schedule_id, "paused"):
        note = PAUSED_NOTE.format(id=schedule_id, request=escape_mrkdwn(turn.item.text[:200]), times=skipped, why=why)
        await turn.tell_asker(note)


async def run_answered(store: Store, turn: TurnContext) -> None:
    if turn.item.schedule_id is not None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        await store.note_schedule_outcome(turn.item.schedule_id, f"answered {when}", skipped=False)


async def change_schedule(
    store: Store, clock: ScheduleClock, workspace: Workspace, schedule_id: int, action: str, user_id: str
) -> str:
    """Pause, resume or delete one schedule for the person who pressed its button: the
    scheduler, the thread's participants and admins may. Words for them either way."""
    schedule = await store.schedule(schedule_id)
    if schedule is None or schedule.state in ("deleted", "done"):
        return "That schedule is no longer there."
    allowed = (
        user_id == schedule.user_id or workspace.access.is_admin(user_id)
        or await workspace.access.is_workspace_admin(user_id) or await store.is_participant(schedule.thread, user_id)
    )
    if not allowed:
        audit("refused", schedule.thread, reason="schedule", user=user_id, schedule=schedule_id)
        return "Only the person who made this schedule, the thread's participants and admins may change it."
    verb = action.removeprefix("schedule_")
    next_at = None
    if verb == "resume":
        rule = rule_of(schedule)
        next_at = rule.first(time.time()) if schedule.kind != "once" else schedule.next_at
    state = {"pause": "paused", "resume": "active", "delete": "deleted"}[verb]
    if not await store.set_schedule_state(schedule_id, state, next_at):
        return "That schedule is no longer there."
    audit(f"schedule_{state}", schedule.thread, user=user_id, schedule=schedule_id)
    clock.wake()
    return f"Schedule #{schedule_id} {'paused' if verb == 'pause' else verb + 'd'} by <@{user_id}>."


def action_schedule_id(action: dict[str, Any]) -> int | None:
    try:
        value = json.loads(str(action.get("value") or ""))
    except ValueError:
        return None
    sid = value.get("schedule") if isinstance(value, dict) else None
    return sid if isinstance(sid, int) and not isinstance(sid, bool) else None
