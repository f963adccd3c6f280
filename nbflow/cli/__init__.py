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

import click

from . import breakpoints, data, notebooks, runs, triage, verbs
from ._common import Group, State, fmt_option


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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



for _command in (*runs.COMMANDS, triage.errors_cmd, breakpoints.breakpoint_grp, *verbs.COMMANDS, notebooks.run_cmd,
                 *data.COMMANDS):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``nbflow`` script and of ``python -m nbflow``."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="nbflow")


__all__ = ["cli", "main"]
