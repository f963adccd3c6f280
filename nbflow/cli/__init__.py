"""The ``nbflow`` command: list and inspect runs, manage breakpoints, operate on runs, and execute
notebooks with papermill.

Every command reads through the store's query helpers and :mod:`nbflow.views`, and acts through
:mod:`nbflow.commands` (the one command path); it never writes store tables itself. One module per
part: :mod:`.runs` (runs, show, history, dead-letters), :mod:`.watch` (show --watch), :mod:`.triage`
(errors, and the --keys/--group selections of the verbs), :mod:`.breakpoints`, :mod:`.verbs` (the
operator verbs of :data:`nbflow.verbs.VERBS`), :mod:`.notebooks` (``run NOTEBOOK``, ``resume
--notebook``). Exit codes: 0 done, 1 refused or unknown run/step/key (the reason on stderr), 2 usage.
docs/cli.md documents every command and docs/json.md every field of ``-o json``.
"""
from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import Any

import click

from ._common import Group, State, fmt_option

# Each command, the module that defines it and the first paragraph of its help (what ``nbflow --help``
# lists): a command's module, and with it the store (SQLAlchemy), rich and the engine, is imported only
# when that command runs, so ``nbflow --help`` imports none of them (bench/latency.py).
# tests/test_import_weight.py checks this table against the commands themselves.
COMMANDS: dict[str, tuple[str, str]] = {
    "approve": ("verbs", "Approve an approval gate that waits for a decision."),
    "breakpoint": (
        "breakpoints", "List, add and remove breakpoints (workflow-scoped: every run; run-scoped: one run).",
    ),
    "cancel": ("verbs", "Cancel the run: every unfinished instance is cancelled."),
    "dead-letters": (
        "runs", "Items of RUN's foreach steps with on_item_error='continue' that exhausted their retries.",
    ),
    "diff": ("data", "What differs between the outputs of RUN_A (before) and RUN_B (after), instance by instance."),
    "errors": ("triage", "The error groups of STEP in RUN: its failed and error-paused instances grouped by cause."),
    "fork": ("data", "A new run of RUN's workflow, with its parameters and pinned code, that re-executes from STEP."),
    "history": ("runs", "The events of RUN, oldest first: status changes, attempts, errors, commands, mutations."),
    "reject": ("verbs", "Reject an approval gate: it fails and its downstream does not run."),
    "resume": ("verbs", "Resume paused instances (all of the run's, or those named)."),
    "retry": ("verbs", "Run instances again from their (possibly edited) inputs."),
    "run": ("notebooks", "Execute NOTEBOOK with papermill against this store and report the runs it started."),
    "runs": ("runs", "List runs, newest first."),
    "set": ("verbs", "Change the inputs or the output of paused instances, audited."),  # listed: SHORT_HELP
    "show": ("runs", "The debug view of RUN: steps with counts per status, breakpoints and what they hold, instances."),
    "signal": ("verbs", "Deliver a payload to the instance waiting on a signed token."),
    "skip": ("verbs", "Mark instances skipped with a given output; downstream receives it."),
    "step": ("verbs", "Resume one paused instance and pause what consumes its output when it is ready."),
}
SHORT_HELP = {"set": "Change the inputs (--inputs, --expr) or the output (--output) of paused instances, audited."}
"""The commands whose listing is a short help of their own, not their help's first paragraph."""


class LazyGroup(Group):
    """The ``nbflow`` group: its commands are imported on first use; the listing of ``--help`` shows
    each one's first help paragraph from :data:`COMMANDS` without importing it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = import_module(f"{__name__}.{COMMANDS[cmd_name][0]}")
            commands: tuple[click.Command, ...] = module.COMMANDS
            for command in commands:
                if command.name == cmd_name:
                    self.add_command(command)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = click.Group(self.name, commands=[
            self.commands.get(name) or click.Command(name, help=COMMANDS[name][1], short_help=SHORT_HELP.get(name))
            for name in self.list_commands(ctx)
        ])
        listed.format_commands(ctx, formatter)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db", envvar="NBFLOW_DB", default=None, metavar="URL",
    help="The store: a SQLAlchemy URL (default: $NBFLOW_DB, else sqlite:///./.nbflow/nbflow.db).",
)
@fmt_option
@click.version_option(package_name="nbflow", prog_name="nbflow")
@click.pass_context
def cli(ctx: click.Context, db: str | None, fmt: str | None) -> None:
    """nbflow: inspect and operate workflow runs stored in an nbflow database.

    Exit codes: 0 done, 1 refused or unknown run/step/key (the reason is printed), 2 usage.
    """
    ctx.obj = State(db, fmt)


def all_commands() -> dict[str, click.Command]:
    """Every command, imported (for tools and tests that walk them)."""
    ctx: Any = None
    return {name: command for name in COMMANDS if (command := cli.get_command(ctx, name)) is not None}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``nbflow`` script and of ``python -m nbflow``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="nbflow")


__all__ = ["cli", "main"]
