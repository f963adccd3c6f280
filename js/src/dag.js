// The DAG: laid out in the browser with dagre (no `dot` binary, no CDN), one node per step (a foreach
// is one node with its per-status counts), coloured by the status Python gives each node.
import dagre from "@dagrejs/dagre";

import { h, s } from "./dom.js";
import { BAR_ORDER, clock, countsText, fmt, truncate } from "./format.js";
import { WHEN } from "./describe.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").Dag} Dag */
/** @typedef {import("./types.js").DagNode} DagNode */
/** @typedef {import("./types.js").Breakpoint} Breakpoint */

const NODE_W = 176;
/** @type {Record<string, number>} */
const NODE_H = { task: 46, foreach: 62 };

/**
 * @typedef {object} Layout  the DAG's dagre layout, kept while the graph's structure stays the same
 * @property {number} width
 * @property {number} height
 * @property {Map<string, Box>} nodes
 * @property {{v: string, w: string, points: import("@dagrejs/dagre").Point[] | undefined}[]} edges
 */

/** @typedef {{x: number, y: number, width: number, height: number}} Box  a laid-out node (x, y: its centre) */

/** @param {Breakpoint} b */
export function bpSummary(b) {
  if (b.label) return `#${b.id} ${b.label}${b.state === "hit" ? ` — holding ${fmt(b.held)}` : ""}`;
  return `#${b.id} ${WHEN[b.when] || b.when}${b.key != null ? ` key ${b.key}` : ""}${b.condition ? ` if ${b.condition}` : ""}${b.state === "hit" ? ` — holding ${fmt(b.held)}` : ""}`;
}

// what the step reads from the notebook that is not stored with the run's code (a resume elsewhere needs the notebook)
/** @param {DagNode} n */
export function usesText(n) {
  return n.uses && n.uses.length ? `uses from the notebook: ${n.uses.map((u) => u.text).join(", ")}` : "";
}

/** @param {Ctx} ctx */
export function createDag(ctx) {
  const { model } = ctx;
  /** @type {{layoutKey: string | null, layout: Layout | null, nodeEls: Map<string, SVGGElement>}} */
  const state = { layoutKey: null, layout: null, nodeEls: new Map() };
  const svg = s("svg", { class: "nbf-svg", role: "img" });
  const legend = h("div", { class: "nbf-legend", hidden: true },
    h("span", { class: "nbf-legend-item" }, h("span", { class: "nbf-dot" }), "breakpoint set"),
    h("span", { class: "nbf-legend-item" }, h("span", { class: "nbf-dot nbf-hit" }), "hit (holding instances)"));
  const el = h("div", { class: "nbf-dag", testid: "dag" }, svg, legend);

  /**
   * @param {Dag} dag
   * @returns {Layout}
   */
  function layoutFor(dag) {
    const key = JSON.stringify([dag.nodes.map((n) => [n.step, n.kind]), dag.edges]);
    if (key === state.layoutKey && state.layout) return state.layout;
    /** @type {import("@dagrejs/dagre").Graph<import("@dagrejs/dagre").GraphLabel, import("@dagrejs/dagre").NodeLabel, import("@dagrejs/dagre").EdgeLabel>} */
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "TB", nodesep: 22, ranksep: 34, marginx: 12, marginy: 10 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const n of dag.nodes) g.setNode(n.step, { width: NODE_W, height: NODE_H[n.kind === "foreach" ? "foreach" : "task"] });
    for (const [a, b] of dag.edges) if (g.hasNode(a) && g.hasNode(b)) g.setEdge(a, b);
    dagre.layout(g);
    const layout = {
      width: g.graph().width || NODE_W + 24,
      height: g.graph().height || 60,
      nodes: new Map(g.nodes().map((v) => [v, /** @type {Box} */ (g.node(v))])), // dagre.layout set x and y
      edges: g.edges().map((e) => ({ v: e.v, w: e.w, points: g.edge(e).points })),
    };
    state.layoutKey = key;
    state.layout = layout;
    state.nodeEls = new Map();
    return layout;
  }

  function renderDag() {
    const dag = model.get("dag") || { nodes: [], edges: [] };
    const selected = model.get("selected_step");
    const layout = layoutFor(dag);
    if (!state.nodeEls.size) {
      // a new structure: draw edges and node groups once; later updates only change their content
      svg.replaceChildren(
        s("defs", {}, s("marker", { id: markerId, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "nbf-arrow" }))),
        ...layout.edges.map((e) => s("path", { class: "nbf-edge", "data-from": e.v, "data-to": e.w, d: edgePath(e.points), "marker-end": `url(#${markerId})` })),
      );
      for (const n of dag.nodes) {
        const g = s("g", { testid: "node", "data-step": n.step, class: "nbf-node", tabindex: 0, role: "button" });
        g.addEventListener("click", () => ctx.send("select_step", { step: n.step }));
        g.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") {
            ev.preventDefault();
            ctx.send("select_step", { step: n.step });
          }
        });
        svg.append(g);
        state.nodeEls.set(n.step, g);
      }
      svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
      svg.setAttribute("width", String(layout.width));
      svg.setAttribute("height", String(layout.height));
      // a wide graph widens its column (up to a share of the widget), and never shrinks below 70 %: the box scrolls
      ctx.root.style.setProperty("--nbf-dag-w", `${Math.ceil(layout.width) + 12}px`);
      svg.style.minWidth = `${Math.round(layout.width * 0.7)}px`;
    }
    for (const n of dag.nodes) {
      const g = state.nodeEls.get(n.step);
      const pos = layout.nodes.get(n.step);
      if (!g || !pos) continue;
      drawNode(g, n, pos, n.step === selected);
    }
    legend.hidden = !dag.nodes.some((n) => n.breakpoints.length);
  }

  const markerId = `nbf-arrow-${Math.random().toString(36).slice(2, 9)}`;

  /** @param {import("@dagrejs/dagre").Point[] | undefined} points */
  function edgePath(points) {
    if (!points || !points.length) return "";
    let d = `M ${points[0].x} ${points[0].y}`;
    if (points.length === 2) return d + ` L ${points[1].x} ${points[1].y}`;
    for (let i = 1; i < points.length - 1; i++) {
      const p = points[i];
      const q = points[i + 1];
      const mx = i === points.length - 2 ? q.x : (p.x + q.x) / 2;
      const my = i === points.length - 2 ? q.y : (p.y + q.y) / 2;
      d += ` Q ${p.x} ${p.y} ${mx} ${my}`;
    }
    return d;
  }

  /**
   * @param {SVGGElement} g
   * @param {DagNode} n
   * @param {Box} pos
   * @param {boolean} selected
   */
  function drawNode(g, n, pos, selected) {
    const w = pos.width;
    const hgt = pos.height;
    const x = pos.x - w / 2;
    const y = pos.y - hgt / 2;
    g.setAttribute("transform", `translate(${x},${y})`);
    g.setAttribute("data-status", n.status);
    g.setAttribute("class", `nbf-node nbf-st-${n.status}${selected ? " nbf-selected" : ""}`);
    g.setAttribute("aria-label", `${n.step}: ${countsText(n.counts)}`);
    const kids = [
      s("title", {}, `${n.step} (${n.kind}) — ${countsText(n.counts)}${n.breakpoints.length ? `\nbreakpoints: ${n.breakpoints.map(bpSummary).join("; ")}` : ""}${usesText(n) ? `\n${usesText(n)}` : ""}`),
      s("rect", { class: "nbf-node-box", width: w, height: hgt, rx: 8, ry: 8 }),
      s("text", { class: "nbf-node-name", x: 14, y: 18 }, truncate(n.step, 20)),
    ];
    if (n.kind !== "task") kids.push(s("text", { class: "nbf-node-kind", x: w - 10, y: 17, "text-anchor": "end" }, n.kind));
    if (n.kind === "foreach") {
      // a mini stacked bar of the item statuses, then the counts
      const bw = w - 26;
      let offset = 0;
      const total = n.total || 0;
      kids.push(s("rect", { class: "nbf-mini-bg", x: 14, y: 27, width: bw, height: 6, rx: 3 }));
      if (total) {
        for (const st of BAR_ORDER) {
          const c = n.counts[st] || 0;
          if (!c) continue;
          const sw = (bw * c) / total;
          kids.push(s("rect", { class: `nbf-mini nbf-fill-${st}`, x: 14 + offset, y: 27, width: Math.max(sw, 1), height: 6 }));
          offset += sw;
        }
      }
      kids.push(s("text", { class: "nbf-node-counts", x: 14, y: 50 }, truncate(total ? countsText(n.counts) : "not started", 30)));
    } else {
      kids.push(s("text", { class: "nbf-node-counts", x: 14, y: 36 }, n.total ? Object.keys(n.counts).filter((st) => n.counts[st]).join(", ") : "not started"));
    }
    if (n.code_change) {
      // the step was redefined while the run lives (a hot fix): instances that started before run the old code
      const at = n.code_change.at ? ` at ${clock(n.code_change.at)}` : "";
      kids.push(s("g", { testid: "node-code-changed", class: "nbf-node-changed", transform: `translate(${w - 5},5)` },
        s("title", {}, `code changed${at}: instances that started before it ran the old code (a retry runs the new)`), s("circle", { r: 4 })));
    }
    if (n.breakpoints.length) {
      // a hollow ring: set, waiting for an instance; a filled red dot: hit, holding instances; a
      // purple ring: logpoints only (they never pause)
      const hit = n.breakpoints.some((b) => b.state === "hit");
      const logOnly = n.breakpoints.every((b) => b.action === "log");
      const tip = `${hit ? "breakpoint hit" : logOnly ? "logpoint" : "breakpoint set (nothing held)"}: ${n.breakpoints.map(bpSummary).join("; ")}`;
      kids.push(s("g", { testid: "bp-marker", class: `nbf-bp-marker${hit ? " nbf-hit" : ""}${logOnly ? " nbf-bp-log" : ""}`, "data-state": hit ? "hit" : "set", "data-count": n.breakpoints.length, transform: `translate(0,${hgt / 2})` },
        s("title", {}, tip),
        hit ? s("circle", { class: "nbf-bp-halo", r: 10 }) : null,
        s("circle", { class: "nbf-bp-core", r: hit ? 6.5 : 5.5 })));
    }
    g.replaceChildren(...kids);
  }

  return { el, render: renderDag };
}
