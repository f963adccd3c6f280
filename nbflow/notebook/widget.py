"""The live debugger widget: an anywidget whose ESM/CSS ship in ``static/`` (built from ``js/``), sent
to the browser once per page where nbflow's server extension serves them, else in each widget's state
(:mod:`nbflow.notebook.assets`).

State comes from :mod:`nbflow.views` (counts by GROUP BY, one page of instance rows, one
instance's detail), so a 10,000-item foreach ships counts and one page, never every row.
Actions go through the ``Run`` verbs and :mod:`nbflow.commands` (the one, audited command path).
A daemon thread per widget watches the run's change token and refreshes the traits, at most ~10
times a second, from one place (:meth:`RunWidget.refresh`), until the run is finished or the widget
is closed. The widget works for runs owned by another process too: it reads the store and writes
commands; the owner applies them, and the widget reports the outcome when it sees it.

Actions arrive as one anywidget command, ``act {name, args}`` (:meth:`RunWidget.act`; the ESM calls
it with ``invoke()``), and are applied by the view's :class:`~nbflow.notebook.controller.Controller`,
which the JupyterLab sidebar shares through the REST API: see there for every action and its
arguments. The answer goes back to the browser that asked, and into :attr:`RunWidget.message` for
every view of the widget. :meth:`RunWidget.handle_message` takes the same action as one dict
(``{"action": name, **args}``), for Python callers and tests.

The DOM (tests/test_browser.py relies on it): ``.nbflow-widget[data-run-id]
[data-status]``; ``status-badge``, ``progress``; ``g[data-testid=node][data-step]`` with
``bp-marker``; ``instances`` with ``instance-row[data-key]``, ``row-status``, ``select``;
``filter-status``, ``filter-text``, ``page-prev``, ``page-next``, ``page-info``; ``resume-selected``,
``resume-all``, ``cancel-run`` (two clicks: the first arms it); ``instance-panel`` with ``inputs``,
``output``, ``error``, ``logs``, ``attempts``, ``history`` and ``resume-one``, ``retry``, ``skip``
(opens the JSON editor for the output the skipped instance stands for), ``edit-inputs``,
``edit-output``, and for a waiting gate ``approve``, ``reject``, ``approval-comment``,
``approval-payload``, ``approval-error``; for a waiting signal ``token`` and ``copy-token``; ``json-editor``,
``reason``, ``json-save``, ``json-cancel``, ``json-error``;
``add-breakpoint``, ``bp-condition``, ``bp-when``, ``bp-key``, ``remove-breakpoint``; ``message``
(class ``error`` when refused); ``step-uses`` (what the chosen step reads from the notebook that is
not stored with the run's code). The history (issue 18): ``history-bar`` (the scrubber; ``history``
is the panel's list) with ``history-range``, ``history-mark[data-kind][data-n]``, ``history-back``,
``history-forward``, ``history-live``,
``history-position`` and ``history-banner`` (the root has ``data-at`` and class ``nbf-at`` while it shows
an event); ``fork-selected`` (the bulk bar), ``fork-step`` (a task's step), ``fork-result`` with
``fork-run-id`` and ``open-fork``; ``forked-from``, ``diff-parent`` and ``diff-panel`` with
``diff-parent-id``, ``diff-runs`` and ``diff-entry[data-section][data-step][data-key]``.

Besides the controller's actions, the widget has one of its own: ``open_run {run}`` shows another
run (the fork "Fork from here" started, with its handle) in the same widget."""
from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import anywidget
import traitlets
from anywidget.experimental import command

from .. import views
from .._compat import get_ipython
from .._util import _actor, current_actor, set_actor
from ..errors import NbflowError
from ..run import Run
from ..states import RunStatus
from .assets import asset, assets_message, loader_esm, served
from .controller import PAGE_SIZE, Controller

OPEN_RUN = "open_run"
"""The widget's own action (not the controller's: the sidebar's panel is of one run): show another run."""

POLL_S = 0.1  # at most ~10 refreshes a second
BUSY_FACTOR = 6  # wait at least 6x as long as a refresh took: the watcher takes < ~15% of the process
FULL_REFRESH_S = 5.0  # re-read even without a change (an owner's lease can expire silently)


class RunWidget(anywidget.AnyWidget):
    """The debugger view of one run: header, DAG, a paged instance table, an instance panel, actions."""

    _esm: str = loader_esm()
    """A ~2 KB loader (what a saved widget state carries) in a kernel that nbflow's server extension
    started (:func:`nbflow.notebook.assets.served`): the view's code and CSS come from the extension's
    static route or from :meth:`assets`, once per page. No ``_css``: the loader adds it. In any other
    kernel the widget carries the whole view (``_esm`` and ``_css``), as anywidget's widgets do."""

    run_id = traitlets.Unicode("").tag(sync=True)
    summary = traitlets.Dict().tag(sync=True)
    """id, workflow, version, status, interrupted, owner, progress, counts, break_on_error, params."""
    dag = traitlets.Dict().tag(sync=True)
    """nodes (step, kind, foreach, counts, total, status, breakpoints) and edges."""
    selected_step = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    instances = traitlets.Dict().tag(sync=True)
    """One page of the selected step's instances: step, offset, limit, total, status, text, rows. A row's
    ``key`` is the user's key where JSON carries it unchanged (an int key is a number), else its text
    (:func:`nbflow.views.shown_key`); the browser sends it back as is, and it addresses by its text."""
    selected = traitlets.Dict(None, allow_none=True).tag(sync=True)
    """The selected instance's address: {step, key} (``key`` as the rows show it)."""
    detail = traitlets.Dict(None, allow_none=True).tag(sync=True)
    """The selected instance (:func:`nbflow.views.instance_detail`), or None."""
    errors = traitlets.Dict(None, allow_none=True).tag(sync=True)
    """The selected step's error groups while the Errors view is open (:func:`nbflow.views.error_groups`)."""
    selection = traitlets.Dict().tag(sync=True)
    """What the bulk verbs act on: kind (none, keys, group, filter), keys, group, count, label."""
    timeline = traitlets.Dict(None, allow_none=True).tag(sync=True)
    """The selected step's durations and attempts over time (:func:`nbflow.views.timeline`)."""
    history = traitlets.Dict().tag(sync=True)
    """The history scrubber: total (events), marks (run-level events, pauses, failures) and at (the event
    shown, None when live: :func:`nbflow.views.run_state_at`)."""
    diff = traitlets.Dict(None, allow_none=True).tag(sync=True)
    """A fork's "vs parent" panel while it is open: the parent, the fork's step and keys, both runs'
    parameters and code versions, and the changed, added and removed items (:meth:`nbflow.Run.diff`)."""
    message = traitlets.Dict().tag(sync=True)
    """The last answer: seq, ok, text, action, req (echoed from :meth:`handle_message`)."""
    live = traitlets.Bool(False).tag(sync=True)

    def __init__(self, run: Run, *, live: bool = True, page_size: int = PAGE_SIZE, **kwargs: Any) -> None:
        self.run = run
        self.store = run.store
        self.page_size = page_size
        self.controller = Controller(run, page_size=page_size, actor=_kernel_actor(), shell=_kernel_shell())
        """The view's state and actions (shared with the sidebar's REST endpoint)."""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._token: tuple[Any, ...] | None = None
        self._seq = 0
        self._thread: threading.Thread | None = None
        if not served():  # no route to the files for this kernel's page: the state carries the whole view
            self._esm, self._css = asset("widget.js").decode(), asset("widget.css").decode()
        values = self._compute()
        super().__init__(run_id=run.id, **values, **kwargs)  # the first state goes out with the comm's open
        if live and not RunStatus(self._status).terminal:
            self._start_watching()

    def _start_watching(self) -> None:
        self.live = True
        self._thread = threading.Thread(target=self._watch, args=(self._stop,), name=f"nbflow-widget-{self.run.id}",
                                        daemon=True)
        self._thread.start()

    @property
    def _status(self) -> str:
        return self.controller.status

    # -- state ------------------------------------------------------------------------------------
    def refresh(self, force: bool = True) -> None:
        """Read the store and set every trait that changed, in one comm message: the one place the
        state traits are set (from the watcher thread or after an action). Without *force*, the
        selected instance's detail is re-read only when its row changed."""
        with self._lock:
            values = self._compute(force)
            with self.hold_sync():
                for name, value in values.items():
                    setattr(self, name, value)

    def _compute(self, force: bool = True) -> dict[str, Any]:
        """The state traits' values (the controller reads them: counts, one page, one instance)."""
        token = views.change_token(self.store, self.run.id)
        values = self.controller.state(force)
        self._token = token
        return values

    # -- live updates -----------------------------------------------------------------------------
    def _watch(self, stop: threading.Event) -> None:
        last_full = time.monotonic()
        errors = 0
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                if self.controller.pending:
                    with self._lock:
                        settled = self.controller.settle()
                    for answer in settled:
                        self._say(answer)
                token = views.change_token(self.store, self.run.id)
                if token != self._token or t0 - last_full > FULL_REFRESH_S:
                    self.refresh(force=False)
                    last_full = t0
                errors = 0
                if RunStatus(self._status).terminal and not self.controller.pending:
                    break  # the last update is sent; nothing will change any more
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the view; give up after many
                errors += 1
                if errors >= 50:
                    self._say({"ok": False, "text": f"live updates stopped: {type(exc).__name__}: {exc}",
                               "action": "watch"})
                    break
            spent = time.monotonic() - t0
            # coalesce, and leave the GIL to the run; but an owner's answer awaited is looked for every
            # POLL_S (one row read), not only after a slow refresh's back-off
            until = time.monotonic() + max(POLL_S, BUSY_FACTOR * spent)
            while not stop.wait(max(min(POLL_S, until - time.monotonic()), 0)) and time.monotonic() < until:
                if self.controller.pending:
                    break
        with self._lock:
            if stop is self._stop:  # not a watcher of a run the widget showed before (open_run)
                self.live = False

    def close(self) -> None:
        """Stop the live updates and close the widget."""
        self._stop.set()
        super().close()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the live-update thread (the widget stays displayed, frozen)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- actions from the browser ----------------------------------------------------------------
    @command
    def act(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
        """The anywidget command the ESM invokes: ``{name, args}`` -> the controller's answer."""
        if not isinstance(msg, Mapping):
            return self.apply("?", None), []
        return self.apply(msg.get("name"), msg.get("args")), []

    @command
    def assets(self, msg: Any, buffers: list[bytes]) -> tuple[dict[str, str], list[bytes]]:
        """The anywidget command the loader invokes where the server extension does not serve the view:
        its code and CSS (:func:`nbflow.notebook.assets.assets_message`)."""
        return assets_message(), []

    def handle_message(self, content: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one action given as ``{"action": name, **args}`` (``req``, if any, is echoed in
        :attr:`message`); returns the answer. A refused or invalid action sets :attr:`message` with
        ``ok`` False and changes nothing."""
        if not isinstance(content, Mapping) or not isinstance(content.get("action"), str):
            answer = {"ok": False, "text": f"bad message {content!r}: expected {{'action': ...}}", "action": "?"}
            self._say(answer)
            return answer
        args = {k: v for k, v in content.items() if k not in ("action", "req")}
        return self.apply(content["action"], args, req=content.get("req"))

    def apply(self, name: Any, args: Any, req: Any = None) -> dict[str, Any]:
        """Apply action *name* with *args* (plain JSON) as the person at this kernel, refresh the
        traits, report the answer in :attr:`message` and return it."""
        actor = _kernel_actor()
        token = set_actor(actor)
        try:
            with self._lock:
                answer = self._open_run(args) if name == OPEN_RUN else self.controller.act(name, args)
                if answer["ok"]:
                    self.refresh()
                else:
                    with contextlib.suppress(Exception):  # show the state as it is now, if the store answers
                        self.refresh()
            if answer["text"] is not None or not answer["ok"]:
                self._say(answer, req)
        except Exception as exc:  # noqa: BLE001 - never a traceback in the kernel's log for a click
            answer = {"ok": False, "text": f"internal error: {type(exc).__name__}: {exc}", "action": str(name),
                      "command": None}
            self._say(answer, req)
            with contextlib.suppress(Exception):  # show the state as it is now, if the store answers
                self.refresh()
        finally:
            _actor.reset(token)
        return answer

    def _open_run(self, args: Any) -> dict[str, Any]:
        """``open_run {run}``: show another run in this widget: one this view forked (its handle, whose
        scheduler lives in this kernel), its parent, or any run of the store; the live updates follow it."""
        out: dict[str, Any] = {"ok": False, "text": None, "action": OPEN_RUN, "command": None}
        run_id = args.get("run") if isinstance(args, Mapping) else None
        if not isinstance(run_id, str) or not run_id:
            return {**out, "text": "open_run needs the id of the run to show: {run}"}
        run = self.controller.forks.get(run_id)
        if run is None:
            try:
                run = Run(self.store, run_id)
            except NbflowError as exc:
                return {**out, "text": str(exc)}
        forks = self.controller.forks
        self._stop.set()  # the old run's watcher ends at its next look (it waits for this lock first)
        self._stop = threading.Event()
        self.run = run
        self.controller = Controller(run, page_size=self.page_size, actor=self.controller.actor,
                                     shell=self.controller.shell)
        self.controller.forks.update(forks)
        self.run_id = run.id
        self.live = False
        self.refresh()
        if not RunStatus(self._status).terminal:
            self._start_watching()
        return {**out, "ok": True, "text": f"showing run {run.id}"}

    def _say(self, answer: Mapping[str, Any], req: Any = None) -> None:
        with self._lock:
            self._seq += 1
            self.message = {"seq": self._seq, "ok": bool(answer.get("ok")), "text": answer.get("text") or "",
                            "action": answer.get("action"), "req": req}


def _kernel_shell() -> Any:
    """The shell of the IPython kernel this widget is shown from (``debug_cell`` binds inputs there), else None."""
    try:
        ip = get_ipython()
    except ImportError:
        return None
    return ip if ip is not None and getattr(ip, "kernel", None) is not None else None


def _kernel_actor() -> str:
    """Who acts from this kernel's widget: the JupyterHub user when NBFLOW_ACTOR does not say, else as
    everywhere (:func:`nbflow.set_actor`, NBFLOW_ACTOR, the OS user)."""
    hub = os.environ.get("JUPYTERHUB_USER") if not os.environ.get("NBFLOW_ACTOR") else None
    return hub or current_actor()


# -- display --------------------------------------------------------------------------------------
_widgets: weakref.WeakKeyDictionary[Run, RunWidget] = weakref.WeakKeyDictionary()


def widget_for(run: Run) -> RunWidget:
    """The run's widget (one per ``Run`` object, so displaying ``run`` twice shows two synced views)."""
    w = _widgets.get(run)
    if w is None or w.comm is None:
        w = RunWidget(run)
        _widgets[run] = w
    return w


__all__ = ["PAGE_SIZE", "RunWidget", "widget_for"]
