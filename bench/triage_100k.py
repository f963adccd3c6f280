"""Issue 16: triage of a 100,000-item foreach, measured in the store and in the widget's state.

Three runs of one workflow (``export`` -> ``parse`` foreach -> ``total``) in a fresh SQLite store:

* **paused**: a breakpoint on ``parse``: all 100,000 items paused before their body;
* **errors**: break-on-error, 1,700 items paused on an error in three groups (1,000 ValueError for a
  decimal comma, 500 TypeError for a missing amount, 200 KeyError), 98,300 succeeded;
* **moving**: no breakpoint, a displayed ``RunWidget`` counting the state updates it pushes while the
  100,000 items run.

For the first two, each figure is the median of ``--rounds`` rounds: the counts (``views.run_state``),
one page of the table (first page, and one at offset 50,000), the error groups, the keys of a filter
(``views.error_groups`` / ``views.filter_keys`` where they exist), and the controller's ``state()``
(the widget's synced state): its JSON size (target <= 50 KB) and time, and a page change. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbflow
from nbflow import views
from nbflow.engine.lifecycle import stop_all
from nbflow.notebook.controller import Controller
from nbflow.notebook.widget import RunWidget


def workflow(url: str, name: str) -> nbflow.Workflow:
    """*bad* (a run parameter) False: no malformed rows."""
    wf = nbflow.Workflow(name, store=url)

    @wf.step
    def export(n, bad):
        rows = []
        for i in range(n):
            row: dict[str, Any] = {"id": i, "amount": f"{10 + i % 90}.{i % 100:02d}"}
            if not bad:
                pass
            elif i % 100 == 7:
                row["amount"] = row["amount"].replace(".", ",")  # 1,000 ValueErrors
            elif i % 200 == 13:
                row["amount"] = None  # 500 TypeErrors
            elif i % 500 == 99:
                del row["amount"]  # 200 KeyErrors
            rows.append(row)
        return rows

    @wf.foreach("export", key=lambda row: row["id"])
    def parse(item):
        return {"id": item["id"], "cents": round(float(item["amount"]) * 100)}

    @wf.step
    def total(parse):
        return sum(p["cents"] for p in parse)

    return wf


def median_s(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """The median wall time of *rounds* calls of *fn*, and its last value."""
    times, value = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def store_figures(run: nbflow.Run, rounds: int) -> dict[str, Any]:
    store, rid, step = run.store, run.id, "parse"
    out: dict[str, Any] = {}
    t, state = median_s(lambda: views.run_state(store, rid), rounds)
    node = next(n for n in state["dag"]["nodes"] if n["step"] == step)
    out["counts"] = {"ms": ms(t), "value": node["counts"]}
    status = getattr(views, "PROBLEMS", "paused")  # the filter the table opens on
    t, page = median_s(lambda: views.instance_page(store, rid, step, status=status, offset=0, limit=20), rounds)
    out["page_first"] = {"ms": ms(t), "rows": len(page["rows"]), "total": page["total"], "status": status}
    t, page = median_s(lambda: views.instance_page(store, rid, step, offset=50_000, limit=20), rounds)
    out["page_50000"] = {"ms": ms(t), "rows": len(page["rows"])}
    t, page = median_s(lambda: views.instance_page(store, rid, step, text="4242", offset=0, limit=20), rounds)
    out["page_text_filter"] = {"ms": ms(t), "total": page["total"]}
    groups = getattr(views, "error_groups", None)
    if groups is not None:
        t, value = median_s(lambda: groups(store, rid, step), rounds)
        out["error_groups"] = {"ms": ms(t), "groups": [(g["type"], g["count"]) for g in value["groups"]],
                               "json_bytes": len(json.dumps(value))}
        if value["groups"]:
            biggest = value["groups"][0]["id"]
            t, found = median_s(lambda: views.group_keys(store, rid, step, biggest), rounds)
            out["group_keys_largest"] = {"ms": ms(t), "keys": len(found)}
            t, found = median_s(lambda: views.filter_keys(store, rid, step, group=biggest), rounds)
            out["filter_keys_group"] = {"ms": ms(t), "keys": len(found)}
    keys = getattr(views, "filter_keys", None)
    if keys is not None:
        t, value = median_s(lambda: keys(store, rid, step, status="paused"), rounds)
        out["filter_keys_paused"] = {"ms": ms(t), "keys": len(value)}
    timeline = getattr(views, "timeline", None)
    if timeline is not None:
        t, value = median_s(lambda: timeline(store, rid, step), rounds)
        out["timeline"] = {"ms": ms(t), "bins": len(value.get("bins", [])) if value else 0}
    return out


def controller_figures(run: nbflow.Run, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t, ctl = median_s(lambda: Controller(run), rounds)
    out["open_ms"] = ms(t)  # a new view: picks the step to show, as a widget or a sidebar tab does
    def widget_open() -> RunWidget:  # what displaying a run costs in the kernel, before the browser draws
        w = RunWidget(nbflow.Run(run.store, run.id), live=False)
        w.close()
        return w

    t, _ = median_s(widget_open, rounds)
    out["widget_open_ms"] = ms(t)
    t, state = median_s(ctl.state, rounds)
    out["state"] = {"ms": ms(t), "json_bytes": len(json.dumps(state)), "rows": len(state["instances"]["rows"]),
                    "step": state["selected_step"], "status_filter": state["instances"].get("status")}

    view = ctl.view()

    def sidebar_request() -> dict[str, Any]:  # what one REST action costs: a new controller on the view
        fresh = Controller(run, view=view)
        fresh.act("refresh")
        return fresh.state()

    t, state = median_s(sidebar_request, rounds)
    out["sidebar_request"] = {"ms": ms(t), "json_bytes": len(json.dumps(state))}

    def page_change() -> dict[str, Any]:
        ctl.act("page", {"delta": 1})
        return ctl.state()

    t, state = median_s(page_change, rounds)
    out["page_change"] = {"ms": ms(t), "json_bytes": len(json.dumps(state)), "offset": state["instances"]["offset"]}
    if ctl.act("show_errors", {"on": True})["ok"]:
        t, state = median_s(ctl.state, rounds)
        out["state_errors_open"] = {"ms": ms(t), "json_bytes": len(json.dumps(state))}
        groups = (state.get("errors") or {}).get("groups") or []
        if groups and ctl.act("select", {"group": groups[0]["id"]})["ok"]:
            t, state = median_s(ctl.state, rounds)
            out["state_group_selected"] = {"ms": ms(t), "json_bytes": len(json.dumps(state)),
                                           "selection": state.get("selection", {}).get("label")}
    return out


ASSETS = {"_esm", "_css", "_anywidget_id"}
"""anywidget's code and style, sent once when the widget starts: not the view's state."""


class CountingWidget(RunWidget):
    """A RunWidget that records each state update it sends (time, JSON bytes) instead of sending it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[tuple[float, int]] = []
        super().__init__(*args, **kwargs)

    def _send(self, msg: Any, buffers: Any = None) -> None:
        if isinstance(msg, dict) and msg.get("method") == "update" and set(msg["state"]) - ASSETS:
            self.sent.append((time.monotonic(), len(json.dumps(msg["state"]))))


def widget_rate(url: str, n: int) -> dict[str, Any]:
    wf = workflow(url, "triage_moving")
    run = wf.run(params={"n": n, "bad": False})
    t0 = time.monotonic()
    w = CountingWidget(run)
    status = run.wait()
    t1 = time.monotonic()
    if w._thread is not None:
        w._thread.join(10)
    w.close()
    sent = [s for s in w.sent if s[0] <= t1 + 0.5]
    per_second: dict[int, int] = {}
    for at, _ in sent:
        per_second[int(at - t0)] = per_second.get(int(at - t0), 0) + 1
    stop_all()
    return {"status": str(status), "run_s": round(t1 - t0, 2), "updates": len(sent),
            "per_s_mean": round(len(sent) / (t1 - t0), 2), "per_s_max_1s_window": max(per_second.values(), default=0),
            "update_bytes_median": statistics.median([b for _, b in sent]) if sent else 0,
            "update_bytes_max": max((b for _, b in sent), default=0)}


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "load_avg": load, "threads": threading.active_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000, help="items of the foreach")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per figure (the median is given)")
    ap.add_argument("--skip-widget", action="store_true", help="leave out the moving run's widget updates")
    args = ap.parse_args()
    out: dict[str, Any] = {"n": args.n, "rounds": args.rounds, "machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        t0 = time.perf_counter()
        paused = workflow(url, "triage_paused").run(params={"n": args.n, "bad": True}, breakpoints=["parse"])
        assert paused.wait() == "paused"
        out["paused"] = {"build_s": round(time.perf_counter() - t0, 2)}
        t0 = time.perf_counter()
        errors = workflow(url, "triage_errors").run(params={"n": args.n, "bad": True}, break_on_error=True)
        assert errors.wait() == "paused"
        out["errors"] = {"build_s": round(time.perf_counter() - t0, 2)}
        for name, run in (("paused", paused), ("errors", errors)):
            out[name]["store"] = store_figures(run, args.rounds)
            out[name]["controller"] = controller_figures(run, args.rounds)
        out["store_mb"] = round(os.path.getsize(Path(tmp) / "bench.db") / 2**20, 1)
        for run in (paused, errors):
            run.cancel()
        stop_all()
        if not args.skip_widget:
            out["moving"] = widget_rate(url, args.n)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
