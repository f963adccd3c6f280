"""What every ``nbflow`` command shares: the store the group's options name, the output options,
the text helpers, targets (``STEP[:KEY]``) and the confirmation."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._util import dumps, parse_json
from ..errors import NbflowError
from ..states import InstanceStatus, RunStatus, label

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ..store import Store

# rich, the store (SQLAlchemy) and the engine are imported where they are used, not here: ``nbflow
# --help`` imports this module and none of them (bench/latency.py).

APPLY_WAIT_S = 10.0
"""How long a verb sent to a live owner waits to report the owner's answer (it applies within ~0.1 s)."""

RUN_STATUSES = [s.value for s in RunStatus]
INSTANCE_STATUSES = [s.value for s in InstanceStatus]
ATTENTION = ("paused", "failed", "retrying", "waiting")
"""The instance states `nbflow show` lists in text by default: the ones a person may act on."""

STYLE = {
    "running": "cyan", "ready": "cyan", "pending": "dim", "retrying": "yellow", "paused": "bold yellow",
    "waiting": "yellow", "succeeded": "green", "skipped": "green", "failed": "bold red", "cancelled": "magenta",
}


# ---------------------------------------------------------------------------------- plumbing
class State:
    """What the group's options leave for the verbs: the store URL and the default output format."""

    def __init__(self, db: str | None, fmt: str | None) -> None:
        self.db = db
        self.fmt = fmt
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            from ..store import Store, urls

            try:
                self._store = Store.open(self.db)
            except urls.BadUrl as exc:
                raise click.BadParameter(
                    f"{self.db!r} is not a usable SQLAlchemy URL ({exc})", param_hint="'--db'"
                ) from None
            except urls.CannotConnect as exc:
                raise click.ClickException(f"cannot open the store {self.db or '(default)'}: {exc.orig}") from None
            except ImportError as exc:
                raise click.ClickException(
                    f"cannot open the store: its database driver is not installed ({exc}); "
                    "install the driver the URL names (for PostgreSQL: psycopg)"
                ) from None
        return self._store

    def format(self, fmt: str | None) -> str:
        return fmt or self.fmt or "text"


class Group(click.Group):
    """Turns nbflow's own errors into exit code 1 with their message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NbflowError as exc:
            raise click.ClickException(str(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from ..store import urls
            from ..store.store import error_text, store_error

            if not isinstance(exc, urls.DATABASE_ERRORS):  # a query the store's own mapping did not see
                raise
            obj = ctx.obj
            known = obj._store if isinstance(obj, State) else None
            where = known.where if known is not None else f"the store {getattr(obj, 'db', None) or '(default)'}"
            err = store_error(where, exc)
            raise click.ClickException(str(err) if err else f"{where} failed: {error_text(exc)}") from None


def fmt_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-o", "--format", "fmt", type=click.Choice(["text", "json"]), default=None,
        help="text (tables for people, the default) or json (stable, for scripts).",
    )(f)


def force_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--force", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")(f)


def reason_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--reason", default=None, help="Why: recorded in the run's history with your name.")(f)


def emit_json(value: Any) -> None:
    """Print *value* as strict JSON (NaN or a lone surrogate in a stored value is shown as text)."""
    click.echo(dumps(value, indent=2))


def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def local_time(iso: str | None) -> str:
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def status_text(status: str) -> Text:
    from rich.text import Text

    return Text(status, style=STYLE.get(status, ""))


def counts_text(counts: Mapping[str, int]) -> Text:
    """A step's per-status counts, coloured, the zero ones left out (``succeeded 983  paused 17``)."""
    from rich.text import Text

    out = Text()
    for st, n in counts.items():
        if n:
            if out:
                out.append("  ")
            out.append(f"{st} {n}", style=STYLE.get(st, ""))
    return out


def compact(value: Any, width: int = 100) -> str:
    text = dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def target_text(step: str | None, key: str | None) -> str:
    return "-" if step is None else label(step, key)


def parse_json_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Click callback: the option's JSON value; invalid JSON, NaN, Infinity or a lone surrogate is a
    usage error (exit 2) naming the option. ``@FILE`` reads the JSON from FILE (``@-``: standard input),
    as curl does: a value above ~128 KiB does not fit in one command-line argument."""
    if value is None:
        return UNSET
    if value.startswith("@"):
        source = value[1:]
        try:
            value = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read JSON from {source!r}: {exc}", ctx, param) from None
    try:
        return parse_json(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc}); write a JSON value, e.g. '{{\"x\": 1}}', '3' or '\"text\"' (quotes included)",
            ctx, param,
        ) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


UNSET: Any = object()



# ---------------------------------------------------------------------------------- targets
Groups = Sequence[tuple[str | None, list[str] | None]]


def groups_of(targets: Iterable[str]) -> list[tuple[str, list[str] | None]]:
    """``["enrich:3", "enrich:5", "report"]`` -> ``[("enrich", ["3", "5"]), ("report", None)]``."""
    from ..breakpoints import parse_target

    by: dict[str, list[str] | None] = {}
    for text in targets:
        step, key = parse_target(text)
        if key is None:
            by[step] = None
        elif step not in by:
            by[step] = [key]
        else:
            keys = by[step]
            if keys is not None and key not in keys:
                keys.append(key)
    return list(by.items())


def describe(groups: Groups, verb: str) -> str:
    parts = []
    for step, keys in groups:
        if step is None:
            parts.append("every paused instance" if verb == "resume" else "every unfinished instance")
        elif keys is None:
            parts.append(step if verb in ("approve", "reject", "step_over") else f"every instance of {step}")
        elif len(keys) > SHOWN_KEYS:
            parts.append(f"{len(keys)} instances of {step} ("
                         + ", ".join(f"{step}:{k}" for k in keys[:SHOWN_KEYS]) + ", …)")
        else:
            parts.extend(f"{step}:{k}" for k in keys)
    return ", ".join(parts)


SHOWN_KEYS = 5
"""A command over more keys than this is described by its count and its first keys."""



def confirm(force: bool, question: str, refusal: str) -> None:
    """Ask on a terminal; without one, refuse unless --force (exit 1 with the hint)."""
    if force:
        return
    if not sys.stdin.isatty():
        raise click.ClickException(
            f"{refusal}: standard input is not a terminal, so nothing can be confirmed; pass --force"
        )
    if not click.confirm(question, default=False, err=True):
        raise click.ClickException("not confirmed; nothing was changed")


