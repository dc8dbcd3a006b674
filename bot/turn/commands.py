"""In-thread commands: `!word`, or `@threadbox word`, as the whole message.

Each runs in the thread's order like any message, in place of a model call. (`!stop` is the
exception: it must not wait behind the turn it stops, so the listeners answer it at intake.)
A new command is one `Command` in `thread_commands`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from storage import Store

from ..policy.usage import Prices, usage_report
from ..schedules.commands import Scheduling
from ..threads import command_text, is_command
from .context import TurnContext
from .export import ThreadExports
from .resets import Resets


@dataclass(frozen=True)
class Command:
    word: str
    run: Callable[[TurnContext], Awaitable[None]]


@dataclass(frozen=True)
class CommandWithText:
    """`!word <text>`: the command is given what follows its word."""

    word: str
    run: Callable[[TurnContext, str], Awaitable[None]]


class InThreadCommands:
    """The commands a message may be, looked up by their word."""

    def __init__(self, commands: Sequence[Command | CommandWithText]) -> None:
        self.commands = list(commands)

    async def run(self, turn: TurnContext) -> bool:
        """Run the command the message is, if it is one; True when it was."""
        text, bot = turn.item.text, turn.workspace.bot_user_id
        for command in self.commands:
            if isinstance(command, CommandWithText):
                given = command_text(text, bot, command.word)
                if given is not None:
                    await command.run(turn, given)
                    return True
            elif is_command(text, bot, command.word):
                await command.run(turn)
                return True
        return False


def thread_commands(
    store: Store, resets: Resets, prices: Prices, exports: ThreadExports, scheduling: Scheduling
) -> InThreadCommands:
    """`!reset` (a fresh container and history), `!usage` (what the thread and its asker used),
    `!files` (what it has seen), `!export` (a notebook and a zip of its work) and `!fork` (a new
    thread that goes on from here, the original untouched), `!schedule <when> <request>` and
    `!schedules` (runs of this thread on time)."""

    async def reset(turn: TurnContext) -> None:
        await resets.reset(turn.workspace, turn.thread, turn.item.user_id, turn.item.id)

    async def usage(turn: TurnContext) -> None:
        thread = await store.thread_usage(turn.thread)
        person = await store.user_usage(turn.thread.team_id, turn.item.user_id)
        reserved = await store.reserved_input(turn.thread.team_id, turn.item.user_id, excluding=turn.item.id)
        await turn.say(usage_report(thread, person, prices, reserved=reserved))

    return InThreadCommands([
        Command("reset", reset), Command("usage", usage), Command("files", exports.list_files),
        Command("export", exports.export), Command("fork", exports.fork),
        CommandWithText("schedule", scheduling.schedule), Command("schedules", scheduling.list_schedules),
    ])
