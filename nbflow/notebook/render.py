"""Static rendering of a run, for outputs where no JavaScript runs (papermill, nbconvert, GitHub):
DOT text built with the ``graphviz`` package, an SVG when the ``dot`` binary is present, else an
HTML/text summary. Reads the store through :func:`nbflow.views.run_state` (counts, not rows), so a
10,000-item foreach costs one GROUP BY query."""
from __future__ import annotations

import html
import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import graphviz

from .. import views
from ..states import label

if TYPE_CHECKING:
    from ..run import Run

# status -> (border/text colour, fill colour); the widget's CSS uses the same palette
COLOURS: dict[str, tuple[str, str]] = {
    "paused": ("#b45309", "#fef3c7"),
    "running": ("#1d4ed8", "#dbeafe"),
    "succeeded": ("#15803d", "#dcfce7"),
    "failed": ("#b91c1c", "#fee2e2"),
    "waiting": ("#6d28d9", "#ede9fe"),
    "skipped": ("#4b5563", "#e5e7eb"),
    "cancelled": ("#4b5563", "#e5e7eb"),
    "pending": ("#6b7280", "#f9fafb"),
}


def counts_text(counts: Mapping[str, int], sep: str = " · ") -> str:
    """``"997 paused · 3 succeeded"`` (most numerous first), or ``"not started"``."""
    parts = sorted(((n, s) for s, n in counts.items() if n), key=lambda p: (-p[0], p[1]))
    return sep.join(f"{n:,} {s}" for n, s in parts) or "not started"


def _state(run: Run | Mapping[str, Any]) -> Mapping[str, Any]:
    return run if isinstance(run, Mapping) else views.run_state(run.store, run.id)


def _bp_steps(state: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for b in state["breakpoints"]:
        out.setdefault(b["step"], []).append(b)
    return out


def to_dot(run: Run | Mapping[str, Any]) -> str:
    """The DAG as DOT text: one node per step (a foreach is one node), coloured by status, with
    per-status counts in its label and a red dot for a breakpoint."""
    state = _state(run)
    bps = _bp_steps(state)
    g = graphviz.Digraph(
        "nbflow",
        graph_attr={"rankdir": "TB", "bgcolor": "transparent", "nodesep": "0.3", "ranksep": "0.35"},
        node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica", "fontsize": "11",
                   "margin": "0.15,0.06"},
        edge_attr={"color": "#9ca3af", "arrowsize": "0.7"},
    )
    for node in state["dag"]["nodes"]:
        status = node["status"]
        line, fill = COLOURS[status]
        name = html.escape(node["step"])
        kind = "" if node["kind"] == "task" else f' <font point-size="9">[{html.escape(node["kind"])}]</font>'
        marker = ' <font color="#dc2626">&#9679;</font>' if node["step"] in bps else ""
        counts = html.escape(counts_text(node["counts"]))
        label = f'<<b>{name}</b>{kind}{marker}<br/><font point-size="9">{counts}</font>>'
        g.node(node["step"], label=label, color=line, fillcolor=fill, fontcolor="#111827",
               penwidth="2" if node["step"] in bps else "1.2", tooltip=f'{node["step"]}: {status}')
    for a, b in state["dag"]["edges"]:
        g.edge(a, b)
    source: str = g.source  # graphviz ships no types
    return source


def dot_available() -> bool:
    return shutil.which("dot") is not None


def to_svg(run: Run | Mapping[str, Any]) -> str | None:
    """The DAG as an SVG element (text), or None when the ``dot`` binary is not on PATH."""
    if not dot_available():
        return None
    try:
        svg: str = graphviz.Source(to_dot(run)).pipe(format="svg", encoding="utf-8")
    except (graphviz.ExecutableNotFound, graphviz.CalledProcessError):
        return None
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def to_text(run: Run | Mapping[str, Any]) -> str:
    """A plain-text summary: the run line, one line per step, the breakpoints."""
    state = _state(run)
    p = state["progress"]
    extra = " (interrupted)" if state["interrupted"] else ""
    lines = [
        f"nbflow run {state['id']} of {state['workflow']!r}: {state['status']}{extra}, {p['done']}/{p['total']} done"
    ]
    width = max((len(n["step"]) for n in state["dag"]["nodes"]), default=4)
    lines.extend(
        f"  {n['step']:<{width}}  {n['kind']:<8} {counts_text(n['counts'], ', ')}" for n in state["dag"]["nodes"]
    )
    for b in state["breakpoints"]:
        target = label(b["step"], b["key"])
        cond = f" if {b['condition']}" if b["condition"] else ""
        lines.append(f"  breakpoint #{b['id']} {target} ({b['when']}{cond}, {b['scope']}): {b['state']}")
    return "\n".join(lines)


def _badge(status: str) -> str:
    line, fill = COLOURS.get(status, COLOURS["pending"])
    return (f'<span style="display:inline-block;padding:1px 8px;border-radius:9px;font-size:11px;font-weight:600;'
            f'letter-spacing:.04em;color:{line};background:{fill};border:1px solid {line}">{status.upper()}</span>')


def summary_table(state: Mapping[str, Any]) -> str:
    """The steps as an HTML table (status, counts, breakpoints): the view without ``dot``."""
    bps = _bp_steps(state)
    rows = []
    for n in state["dag"]["nodes"]:
        status = n["status"]
        marks = ", ".join(
            f"{html.escape(b['when'])}{' if ' + html.escape(b['condition']) if b['condition'] else ''}"
            + (f" (key {html.escape(str(b['key']))})" if b["key"] is not None else "")
            for b in bps.get(n["step"], [])
        )
        rows.append(
            f"<tr><td style='text-align:left'><b>{html.escape(n['step'])}</b></td>"
            f"<td style='text-align:left'>{html.escape(n['kind'])}</td>"
            f"<td style='text-align:left'>{_badge(status)}</td>"
            f"<td style='text-align:left'>{html.escape(counts_text(n['counts']))}</td>"
            f"<td style='text-align:left'>{marks}</td></tr>"
        )
    return (
        "<table class='nbflow-summary' style='border-collapse:collapse;font-size:12px'>"
        "<thead><tr><th style='text-align:left'>step</th><th style='text-align:left'>kind</th>"
        "<th style='text-align:left'>status</th><th style='text-align:left'>instances</th>"
        "<th style='text-align:left'>breakpoints</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def to_html(run: Run | Mapping[str, Any]) -> str:
    """A header (run id, workflow, status, progress) and the DAG as SVG when ``dot`` is present,
    else the summary table."""
    state = _state(run)
    p = state["progress"]
    pct = 100 * p["done"] / p["total"] if p["total"] else 0
    head = (
        f"<div style='margin-bottom:6px'><b>nbflow</b> run <code>{html.escape(state['id'])}</code> · workflow "
        f"<b>{html.escape(state['workflow'])}</b> · {_badge(state['status'])}"
        + (" · <i>interrupted</i>" if state["interrupted"] else "")
        + f" · {p['done']:,}/{p['total']:,} done"
        f"<div style='height:4px;width:240px;background:#e5e7eb;border-radius:2px;margin-top:4px'>"
        f"<div style='height:4px;width:{pct:.1f}%;background:#16a34a;border-radius:2px'></div></div></div>"
    )
    svg = to_svg(state)
    body = f"<div class='nbflow-dag'>{svg}</div>" if svg is not None else summary_table(state)
    return f"<div class='nbflow-static' data-run-id='{html.escape(state['id'])}'>{head}{body}</div>"


def static_bundle(run: Run) -> dict[str, str]:
    """``text/plain`` and ``text/html`` for a run (what a notebook saved without widgets shows)."""
    state = _state(run)
    return {"text/plain": f"{run!r}\n{to_text(state)}", "text/html": to_html(state)}


__all__ = ["COLOURS", "counts_text", "dot_available", "static_bundle", "summary_table",
           "to_dot", "to_html", "to_svg", "to_text"]
