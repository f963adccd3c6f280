// The nbflow debugger widget (anywidget ESM). State arrives as traits (see nbflow/notebook/widget.py);
// every action is sent to Python with model.send({action, ...}) and goes through nbflow's command path.
// The message protocol and the DOM contract (data-testid attributes) are listed in nbflow/notebook/widget.py.
import dagre from "@dagrejs/dagre";

const STATUSES = ["pending", "ready", "running", "retrying", "paused", "waiting", "succeeded", "failed", "skipped", "cancelled"];
// the order of the stacked progress bar and of a node's mini bar
const BAR_ORDER = ["succeeded", "skipped", "failed", "cancelled", "paused", "waiting", "running", "retrying", "ready", "pending"];
const NODE_W = 176;
const NODE_H = { task: 46, foreach: 62 };
const SVG_NS = "http://www.w3.org/2000/svg";

// ------------------------------------------------------------------ tiny DOM helpers
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "testid") el.setAttribute("data-testid", v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

const fmt = (n) => Number(n || 0).toLocaleString("en-US");

function countsText(counts, sep = " · ") {
  const parts = Object.entries(counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return parts.map(([st, n]) => `${fmt(n)} ${st}`).join(sep) || "not started";
}

function pretty(value) {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value, null, 2);
  } catch (e) {
    return String(value);
  }
}

function compact(value, max = 240) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    text = String(value);
  }
  return text.length > max ? text.slice(0, max) + "…" : text;
}

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

const label = (step, key) => (key == null ? step : `${step}:${key}`);

// ------------------------------------------------------------------ the view
function render({ model, el }) {
  const off = [];
  const on = (name, fn) => {
    model.on(`change:${name}`, fn);
    off.push(() => model.off(`change:${name}`, fn));
  };
  let reqSeq = 0;
  const ui = { selectedKeys: new Set(), keysStep: null, editor: null, cancelArmed: null, layoutKey: null, layout: null, nodeEls: new Map() };

  const send = (msg) => {
    const req = `${Date.now().toString(36)}-${++reqSeq}`;
    model.send({ ...msg, req });
    return req;
  };
  const act = (msg) => {
    showMessage({ ok: true, text: "working…", pending: true });
    return send(msg);
  };

  // ---------------------------------------------------------------- skeleton
  const badge = h("span", { class: "nbf-badge", testid: "status-badge" });
  const interrupted = h("span", { class: "nbf-badge nbf-interrupted", testid: "interrupted", hidden: true, title: "no live process drives this run; `nbflow resume RUN` continues it" }, "INTERRUPTED");
  const liveDot = h("span", { class: "nbf-live", testid: "live" });
  const runId = h("code", { class: "nbf-runid", testid: "run-id" });
  const wfName = h("span", { class: "nbf-wf" });
  const bar = h("div", { class: "nbf-bar", role: "progressbar" });
  const progress = h("span", { class: "nbf-progress", testid: "progress" });
  const countsEl = h("span", { class: "nbf-counts" });
  const ownerEl = h("div", { class: "nbf-owner" });
  const resumeAll = h("button", { class: "nbf-btn", testid: "resume-all", title: "resume every paused instance of the run", onclick: () => act({ action: "resume_all" }) }, "Resume all paused");
  const cancelRun = h("button", { class: "nbf-btn nbf-danger", testid: "cancel-run", title: "cancel the run (click twice)", onclick: onCancel }, "Cancel run");

  const header = h("div", { class: "nbf-header" },
    h("div", { class: "nbf-title" }, h("span", { class: "nbf-logo" }, "nbflow"), runId, wfName, badge, interrupted, liveDot),
    h("div", { class: "nbf-progress-row" }, bar, progress, countsEl, h("span", { class: "nbf-spacer" }), resumeAll, cancelRun),
    ownerEl,
  );

  // DAG + breakpoints
  const svg = s("svg", { class: "nbf-svg", role: "img" });
  const dagBox = h("div", { class: "nbf-dag", testid: "dag" }, svg);
  const bpTitle = h("div", { class: "nbf-section-title" });
  const bpList = h("ul", { class: "nbf-bp-list", testid: "bp-list" });
  const bpKey = h("input", { class: "nbf-input nbf-bp-key", testid: "bp-key", placeholder: "key (all)", size: 6 });
  const bpWhen = h("select", { class: "nbf-input", testid: "bp-when" }, ["before", "after", "error"].map((w) => h("option", { value: w }, w)));
  const bpCond = h("input", { class: "nbf-input nbf-grow", testid: "bp-condition", placeholder: "condition, e.g. item['x'] > 3 (optional)" });
  const bpAdd = h("button", { class: "nbf-btn", testid: "add-breakpoint", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    act({ action: "add_breakpoint", step, key: bpKey.value.trim() || null, when: bpWhen.value, condition: bpCond.value.trim() || null });
  } }, "Add breakpoint");
  const bpRemove = h("button", { class: "nbf-btn", testid: "remove-breakpoint", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    act({ action: "remove_breakpoint", step, key: bpKey.value.trim() || null });
  } }, "Remove");
  const bpBox = h("div", { class: "nbf-bp", hidden: true }, bpTitle, bpList,
    h("div", { class: "nbf-row" }, bpWhen, bpKey, bpCond),
    h("div", { class: "nbf-row" }, bpAdd, bpRemove));
  const left = h("div", { class: "nbf-left" }, dagBox, bpBox);

  // instances
  const stepTitle = h("span", { class: "nbf-step-title" });
  const filterStatus = h("select", { class: "nbf-input", testid: "filter-status", onchange: () => sendFilter() });
  const filterText = h("input", { class: "nbf-input nbf-grow", testid: "filter-text", placeholder: "filter by key or error", type: "search" });
  let filterTimer = null;
  filterText.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(sendFilter, 300);
  });
  filterText.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      clearTimeout(filterTimer);
      sendFilter();
    }
  });
  function sendFilter() {
    send({ action: "filter", status: filterStatus.value, text: filterText.value });
  }
  const resumeSelected = h("button", { class: "nbf-btn", testid: "resume-selected", onclick: () => {
    const step = model.get("selected_step");
    if (!step || !ui.selectedKeys.size) return showMessage({ ok: false, text: "no instance selected: tick the rows to resume" });
    const req = act({ action: "resume", step, keys: [...ui.selectedKeys] });
    ui.clearOn = req;
  } }, "Resume selected");
  const pageAll = h("input", { type: "checkbox", class: "nbf-check", title: "select every row of this page", onchange: () => {
    for (const r of model.get("instances").rows || []) {
      if (pageAll.checked) ui.selectedKeys.add(r.key);
      else ui.selectedKeys.delete(r.key);
    }
    renderInstances();
  } });
  const tbody = h("tbody");
  const table = h("table", { class: "nbf-table", testid: "instances" },
    h("thead", {}, h("tr", {}, h("th", { class: "nbf-c-check" }, pageAll), h("th", {}, "key"), h("th", {}, "status"), h("th", { class: "nbf-c-num" }, "att."), h("th", {}, "detail"))),
    tbody);
  const pagePrev = h("button", { class: "nbf-btn nbf-small", testid: "page-prev", onclick: () => {
    const p = model.get("instances");
    send({ action: "page", offset: Math.max((p.offset || 0) - (p.limit || 50), 0) });
  } }, "‹ Prev");
  const pageNext = h("button", { class: "nbf-btn nbf-small", testid: "page-next", onclick: () => {
    const p = model.get("instances");
    send({ action: "page", offset: (p.offset || 0) + (p.limit || 50) });
  } }, "Next ›");
  const pageInfo = h("span", { class: "nbf-page-info", testid: "page-info" });
  const instBox = h("div", { class: "nbf-instances-box", hidden: true },
    h("div", { class: "nbf-row" }, stepTitle, filterStatus, filterText, resumeSelected),
    h("div", { class: "nbf-table-wrap" }, table),
    h("div", { class: "nbf-pager" }, pagePrev, pageInfo, pageNext));
  const hint = h("div", { class: "nbf-hint" }, "Click a node of the graph to see its instances.");

  // instance panel
  const panelTitle = h("span", { class: "nbf-panel-title" });
  const panelStatus = h("span", { class: "nbf-pill" });
  const closePanel = h("button", { class: "nbf-btn nbf-small nbf-ghost", title: "close", onclick: () => send({ action: "close_instance" }) }, "✕");
  const target = () => {
    const d = model.get("selected");
    return d ? { step: d.step, key: d.key } : null;
  };
  const actionBtn = (testid, text, title, fn) => h("button", { class: "nbf-btn", testid, title, onclick: fn }, text);
  const bResume = actionBtn("resume-one", "Resume", "let this instance go on", () => target() && act({ action: "resume", ...target() }));
  const bRetry = actionBtn("retry", "Retry", "run it again with today's code and its current inputs", () => target() && act({ action: "retry", ...target() }));
  const bSkip = actionBtn("skip", "Skip…", "skip it, giving the output it stands for", () => openEditor("skip"));
  const bInputs = actionBtn("edit-inputs", "Edit inputs…", "change its inputs (paused before its body, on an error, or failed)", () => openEditor("set_inputs"));
  const bOutput = actionBtn("edit-output", "Edit output…", "change its output (paused after its body)", () => openEditor("set_output"));
  const bApprove = actionBtn("approve", "Approve", "approve this gate", () => target() && act({ action: "approve", ...target() }));
  const bReject = actionBtn("reject", "Reject", "reject this gate", () => target() && act({ action: "reject", ...target() }));
  const verbButtons = { resume: bResume, retry: bRetry, skip: bSkip, set_inputs: bInputs, set_output: bOutput, approve: bApprove, reject: bReject };

  const edTitle = h("div", { class: "nbf-section-title" });
  const edText = h("textarea", { class: "nbf-editor-text", testid: "json-editor", spellcheck: "false", rows: 8 });
  const edReason = h("input", { class: "nbf-input nbf-grow", testid: "reason", placeholder: "reason (recorded in the history)" });
  const edError = h("div", { class: "nbf-json-error", testid: "json-error" });
  const edSave = h("button", { class: "nbf-btn nbf-primary", testid: "json-save", onclick: saveEditor }, "Save");
  const edCancel = h("button", { class: "nbf-btn", testid: "json-cancel", onclick: () => closeEditor() }, "Cancel");
  edText.addEventListener("input", () => validateEditor());
  edText.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      saveEditor();
    }
    e.stopPropagation(); // keep Jupyter's keyboard shortcuts out of the editor
  });
  edReason.addEventListener("keydown", (e) => e.stopPropagation());
  filterText.addEventListener("keydown", (e) => e.stopPropagation());
  bpCond.addEventListener("keydown", (e) => e.stopPropagation());
  bpKey.addEventListener("keydown", (e) => e.stopPropagation());
  const editor = h("div", { class: "nbf-editor", hidden: true }, edTitle, edText, edError, h("div", { class: "nbf-row" }, edReason, edSave, edCancel));

  const inputsEl = h("pre", { class: "nbf-pre", testid: "inputs" });
  const outputEl = h("pre", { class: "nbf-pre", testid: "output" });
  const errorEl = h("div", { class: "nbf-error", testid: "error" });
  const logsEl = h("pre", { class: "nbf-pre nbf-logs", testid: "logs" });
  const attemptsEl = h("div", { class: "nbf-attempts", testid: "attempts" });
  const historyEl = h("ol", { class: "nbf-history", testid: "history" });
  const section = (title, body) => h("div", { class: "nbf-section" }, h("div", { class: "nbf-section-title" }, title), body);
  const panel = h("div", { class: "nbf-panel", testid: "instance-panel", hidden: true },
    h("div", { class: "nbf-panel-head" }, panelTitle, panelStatus, h("span", { class: "nbf-spacer" }), closePanel),
    h("div", { class: "nbf-actions" }, bResume, bRetry, bSkip, bInputs, bOutput, bApprove, bReject),
    editor,
    h("div", { class: "nbf-grid2" }, section("Inputs", inputsEl), section("Output", outputEl)),
    section("Error", errorEl),
    h("div", { class: "nbf-grid2" }, section("Logs", logsEl), section("Attempts", attemptsEl)),
    section("History", historyEl));

  const right = h("div", { class: "nbf-right" }, hint, instBox, panel);
  const message = h("div", { class: "nbf-message", testid: "message", role: "status", "aria-live": "polite" });
  const root = h("div", { class: "nbflow-widget" }, header, h("div", { class: "nbf-body" }, left, right), message);
  el.append(root);

  // ---------------------------------------------------------------- header
  function renderSummary() {
    const sm = model.get("summary") || {};
    const status = (sm.status || "").toLowerCase();
    root.setAttribute("data-run-id", sm.id || model.get("run_id") || "");
    root.setAttribute("data-status", status);
    runId.textContent = sm.id || "";
    runId.title = "run id";
    wfName.replaceChildren("workflow ", h("b", {}, sm.workflow || ""), sm.version ? h("span", { class: "nbf-muted", title: `version ${sm.version}` }, ` @${String(sm.version).slice(0, 8)}`) : "");
    badge.textContent = status.toUpperCase();
    badge.className = `nbf-badge nbf-st-${status}`;
    interrupted.hidden = !sm.interrupted;
    const p = sm.progress || { done: 0, total: 0 };
    progress.textContent = `${p.done}/${p.total}`;
    progress.title = `${fmt(p.done)} of ${fmt(p.total)} instances finished`;
    countsEl.textContent = countsText(sm.counts);
    const total = Object.values(sm.counts || {}).reduce((a, b) => a + b, 0);
    bar.replaceChildren(...BAR_ORDER.filter((st) => (sm.counts || {})[st] > 0).map((st) =>
      h("span", { class: `nbf-seg nbf-bg-${st}`, style: `width:${(100 * sm.counts[st]) / total}%`, title: `${fmt(sm.counts[st])} ${st}` })));
    bar.setAttribute("aria-valuenow", String(p.done));
    bar.setAttribute("aria-valuemax", String(p.total));
    const owner = sm.owner || {};
    ownerEl.textContent = owner.text ? `owner: ${owner.text}` : "";
    const terminal = ["succeeded", "failed", "cancelled"].includes(status);
    resumeAll.disabled = terminal || !((sm.counts || {}).paused > 0);
    cancelRun.disabled = terminal;
  }

  function renderLive() {
    const live = model.get("live");
    liveDot.textContent = live ? "● live" : "";
    liveDot.title = live ? "updates as the run changes" : "";
  }

  function onCancel() {
    if (ui.cancelArmed) {
      clearTimeout(ui.cancelArmed);
      ui.cancelArmed = null;
      cancelRun.textContent = "Cancel run";
      cancelRun.classList.remove("nbf-armed");
      act({ action: "cancel" });
      return;
    }
    cancelRun.textContent = "Click again to cancel";
    cancelRun.classList.add("nbf-armed");
    ui.cancelArmed = setTimeout(() => {
      ui.cancelArmed = null;
      cancelRun.textContent = "Cancel run";
      cancelRun.classList.remove("nbf-armed");
    }, 4000);
  }

  // ---------------------------------------------------------------- DAG
  function layoutFor(dag) {
    const key = JSON.stringify([dag.nodes.map((n) => [n.step, n.kind]), dag.edges]);
    if (key === ui.layoutKey) return ui.layout;
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "TB", nodesep: 22, ranksep: 34, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const n of dag.nodes) g.setNode(n.step, { width: NODE_W, height: NODE_H[n.kind === "foreach" ? "foreach" : "task"] });
    for (const [a, b] of dag.edges) if (g.hasNode(a) && g.hasNode(b)) g.setEdge(a, b);
    dagre.layout(g);
    const layout = {
      width: g.graph().width || NODE_W + 20,
      height: g.graph().height || 60,
      nodes: new Map(g.nodes().map((v) => [v, g.node(v)])),
      edges: g.edges().map((e) => ({ v: e.v, w: e.w, points: g.edge(e).points })),
    };
    ui.layoutKey = key;
    ui.layout = layout;
    ui.nodeEls = new Map();
    return layout;
  }

  function renderDag() {
    const dag = model.get("dag") || { nodes: [], edges: [] };
    const selected = model.get("selected_step");
    const layout = layoutFor(dag);
    if (!ui.nodeEls.size) {
      // a new structure: draw edges and node groups once; later updates only change their content
      svg.replaceChildren(
        s("defs", {}, s("marker", { id: markerId, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "nbf-arrow" }))),
        ...layout.edges.map((e) => s("path", { class: "nbf-edge", "data-from": e.v, "data-to": e.w, d: edgePath(e.points), "marker-end": `url(#${markerId})` })),
      );
      for (const n of dag.nodes) {
        const g = s("g", { testid: "node", "data-step": n.step, class: "nbf-node", tabindex: 0, role: "button" });
        g.addEventListener("click", () => send({ action: "select_step", step: n.step }));
        g.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter" || ev.key === " ") {
            ev.preventDefault();
            send({ action: "select_step", step: n.step });
          }
        });
        svg.append(g);
        ui.nodeEls.set(n.step, g);
      }
      svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
      svg.setAttribute("width", layout.width);
      svg.setAttribute("height", layout.height);
    }
    for (const n of dag.nodes) {
      const g = ui.nodeEls.get(n.step);
      const pos = layout.nodes.get(n.step);
      if (!g || !pos) continue;
      drawNode(g, n, pos, n.step === selected);
    }
    renderBreakpoints();
  }

  const markerId = `nbf-arrow-${Math.random().toString(36).slice(2, 9)}`;

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
      s("title", {}, `${n.step} (${n.kind}) — ${countsText(n.counts)}${n.breakpoints.length ? `\nbreakpoints: ${n.breakpoints.map((b) => b.when + (b.key != null ? ` key ${b.key}` : "") + (b.condition ? ` if ${b.condition}` : "")).join("; ")}` : ""}`),
      s("rect", { class: "nbf-node-box", width: w, height: hgt, rx: 8, ry: 8 }),
      s("text", { class: "nbf-node-name", x: 12, y: 18 }, truncate(n.step, 20)),
    ];
    if (n.kind !== "task") kids.push(s("text", { class: "nbf-node-kind", x: w - 10, y: 17, "text-anchor": "end" }, n.kind));
    if (n.kind === "foreach") {
      // a mini stacked bar of the item statuses, then the counts
      const bw = w - 24;
      let off = 0;
      const total = n.total || 0;
      kids.push(s("rect", { class: "nbf-mini-bg", x: 12, y: 27, width: bw, height: 6, rx: 3 }));
      if (total) {
        for (const st of BAR_ORDER) {
          const c = n.counts[st] || 0;
          if (!c) continue;
          const sw = (bw * c) / total;
          kids.push(s("rect", { class: `nbf-mini nbf-fill-${st}`, x: 12 + off, y: 27, width: Math.max(sw, 1), height: 6 }));
          off += sw;
        }
      }
      kids.push(s("text", { class: "nbf-node-counts", x: 12, y: 50 }, truncate(total ? countsText(n.counts) : "not started", 30)));
    } else {
      kids.push(s("text", { class: "nbf-node-counts", x: 12, y: 36 }, n.total ? Object.keys(n.counts).filter((st) => n.counts[st]).join(", ") : "not started"));
    }
    if (n.breakpoints.length) {
      const hit = n.breakpoints.some((b) => b.state === "hit");
      kids.push(s("circle", { testid: "bp-marker", class: `nbf-bp-marker${hit ? " nbf-hit" : ""}`, cx: 0, cy: 0, r: 7, "data-count": n.breakpoints.length }));
    }
    g.replaceChildren(...kids);
  }

  function truncate(text, max) {
    text = String(text);
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function renderBreakpoints() {
    const step = model.get("selected_step");
    const node = (model.get("dag").nodes || []).find((n) => n.step === step);
    bpBox.hidden = !node;
    if (!node) return;
    bpTitle.replaceChildren("Breakpoints on ", h("b", {}, step));
    bpList.replaceChildren(...(node.breakpoints.length ? node.breakpoints.map((b) =>
      h("li", { class: `nbf-bp-item${b.state === "hit" ? " nbf-hit" : ""}`, "data-bp-id": b.id },
        h("span", { class: "nbf-dot" }), `#${b.id} ${b.when}`, b.key != null ? ` · key ${b.key}` : "", b.condition ? ` · if ` : "",
        b.condition ? h("code", {}, b.condition) : "", ` · ${b.scope}`, b.state === "hit" ? ` · holding ${fmt(b.held)}` : "")) :
      [h("li", { class: "nbf-muted" }, "none")]));
    bpRemove.disabled = !node.breakpoints.length;
    const terminal = ["succeeded", "failed", "cancelled"].includes((model.get("summary") || {}).status);
    bpAdd.disabled = terminal;
  }

  // ---------------------------------------------------------------- instances
  let rowEls = new Map();
  function renderInstances() {
    const step = model.get("selected_step");
    const p = model.get("instances") || {};
    const node = (model.get("dag").nodes || []).find((n) => n.step === step);
    hint.hidden = !!step;
    instBox.hidden = !step;
    if (!step) return;
    if (ui.keysStep !== step) {
      ui.selectedKeys.clear();
      ui.keysStep = step;
    }
    stepTitle.replaceChildren(h("b", {}, step), node ? h("span", { class: "nbf-muted" }, ` ${node.kind} · ${fmt(node.total)}`) : "");
    // the status filter, with the node's counts
    const counts = node ? node.counts : {};
    const want = [["", `all (${fmt(node ? node.total : 0)})`], ...STATUSES.filter((st) => counts[st] || st === p.status).map((st) => [st, `${st} (${fmt(counts[st] || 0)})`])];
    const sig = JSON.stringify(want);
    if (filterStatus.dataset.sig !== sig) {
      filterStatus.replaceChildren(...want.map(([v, t]) => h("option", { value: v }, t)));
      filterStatus.dataset.sig = sig;
    }
    filterStatus.value = p.status || "";
    if (document.activeElement !== filterText && filterText.value !== (p.text || "")) filterText.value = p.text || "";
    const sel = model.get("selected");
    const rows = p.rows || [];
    const next = new Map();
    const els = rows.map((r) => {
      const k = r.key == null ? "" : String(r.key);
      let tr = rowEls.get(k);
      if (!tr) {
        const box = h("input", { type: "checkbox", class: "nbf-check", testid: "select", onclick: (ev) => ev.stopPropagation(), onchange: () => {
          if (box.checked) ui.selectedKeys.add(tr._key);
          else ui.selectedKeys.delete(tr._key);
          updateSelectedCount();
        } });
        tr = h("tr", { testid: "instance-row", "data-key": k, class: "nbf-inst-row", tabindex: 0 },
          h("td", { class: "nbf-c-check" }, box), h("td", { class: "nbf-c-key" }), h("td", { testid: "row-status" }), h("td", { class: "nbf-c-num" }), h("td", { class: "nbf-c-detail" }));
        tr._box = box;
        tr.addEventListener("click", () => send({ action: "select_instance", step: tr._step, key: tr._key }));
        tr.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter") send({ action: "select_instance", step: tr._step, key: tr._key });
        });
      }
      tr._key = r.key;
      tr._step = r.step;
      const [, keyTd, stTd, attTd, detTd] = tr.children;
      keyTd.textContent = r.key == null ? "—" : String(r.key);
      stTd.textContent = r.status;
      stTd.className = `nbf-c-status nbf-fg-${r.status}`;
      stTd.setAttribute("data-status", r.status);
      attTd.textContent = r.attempt || "";
      detTd.textContent = r.error ? `${r.error.type}: ${r.error.message}` : r.pause_reason ? `paused ${r.pause_reason}` : "";
      detTd.title = detTd.textContent;
      tr._box.checked = ui.selectedKeys.has(r.key);
      tr._box.disabled = r.key == null;
      tr.classList.toggle("nbf-current", !!sel && sel.step === r.step && (sel.key ?? null) === (r.key ?? null));
      next.set(k, tr);
      return tr;
    });
    rowEls = next;
    if (els.length) tbody.replaceChildren(...els);
    else tbody.replaceChildren(h("tr", { class: "nbf-empty" }, h("td", { colspan: 5 }, p.total === 0 && (p.status || p.text) ? "no instance matches the filter" : "no instances yet")));
    const total = p.total || 0;
    const offset = p.offset || 0;
    pageInfo.textContent = total ? `${fmt(offset + 1)}–${fmt(offset + rows.length)} of ${fmt(total)}` : "0 of 0";
    pagePrev.disabled = offset <= 0;
    pageNext.disabled = offset + (p.limit || 50) >= total;
    pageAll.checked = rows.length > 0 && rows.every((r) => ui.selectedKeys.has(r.key));
    updateSelectedCount();
  }

  function updateSelectedCount() {
    const n = ui.selectedKeys.size;
    resumeSelected.textContent = n ? `Resume selected (${n})` : "Resume selected";
    resumeSelected.disabled = !n;
  }

  // ---------------------------------------------------------------- instance panel
  function renderDetail() {
    const sel = model.get("selected");
    const d = model.get("detail");
    panel.hidden = !sel;
    if (!sel) {
      closeEditor();
      return;
    }
    if (ui.editor && (ui.editor.step !== sel.step || (ui.editor.key ?? null) !== (sel.key ?? null))) closeEditor();
    panelTitle.textContent = label(sel.step, sel.key);
    for (const tr of rowEls.values()) tr.classList.toggle("nbf-current", sel.step === tr._step && (sel.key ?? null) === (tr._key ?? null));
    if (!d || d.missing) {
      panelStatus.textContent = d ? "not started" : "loading…";
      panelStatus.className = "nbf-pill nbf-st-pending";
      for (const b of Object.values(verbButtons)) b.disabled = true;
      bApprove.hidden = bReject.hidden = true;
      inputsEl.textContent = outputEl.textContent = logsEl.textContent = "";
      errorEl.replaceChildren(h("span", { class: "nbf-muted" }, "—"));
      attemptsEl.replaceChildren();
      historyEl.replaceChildren();
      return;
    }
    panelStatus.textContent = d.status + (d.pause_reason ? ` · ${d.pause_reason}` : "");
    panelStatus.className = `nbf-pill nbf-st-${d.status}`;
    const verbs = new Set(d.verbs || []);
    for (const [verb, b] of Object.entries(verbButtons)) b.disabled = !verbs.has(verb);
    bApprove.hidden = bReject.hidden = !verbs.has("approve");
    inputsEl.textContent = pretty(d.inputs);
    if (d.readonly_inputs && d.readonly_inputs.length) inputsEl.title = `not editable here (not JSON, or too large): ${d.readonly_inputs.join(", ")}`;
    else inputsEl.removeAttribute("title");
    outputEl.textContent = d.has_output ? pretty(d.output) : "— (no output yet)";
    if (d.error) {
      errorEl.replaceChildren(h("div", { class: "nbf-error-line" }, h("b", {}, d.error.type), ": ", d.error.message),
        d.error.traceback ? h("pre", { class: "nbf-pre nbf-traceback" }, d.error.traceback) : "");
    } else errorEl.replaceChildren(h("span", { class: "nbf-muted" }, "—"));
    logsEl.textContent = d.logs ? (d.logs_truncated ? "…\n" : "") + d.logs : "";
    logsEl.classList.toggle("nbf-empty-pre", !d.logs);
    if (!d.logs) logsEl.textContent = "(nothing captured)";
    attemptsEl.replaceChildren(...(d.attempts && d.attempts.length ? d.attempts.map((a) =>
      h("div", { class: "nbf-attempt" }, h("b", {}, `#${a.attempt ?? "?"}`), ` ${time(a.started)} `,
        a.outcome ? h("span", { class: `nbf-fg-${a.outcome === "succeeded" ? "succeeded" : a.outcome === "retrying" || a.outcome === "attempt_failed" ? "paused" : "failed"}` }, a.outcome.replace("_", " ")) : h("span", { class: "nbf-fg-running" }, "running"),
        a.error ? h("span", { class: "nbf-muted" }, ` — ${a.error}`) : "")) :
      [h("span", { class: "nbf-muted" }, `attempts: ${d.attempt || 0}`)]));
    const hist = (d.history || []).slice().reverse();
    historyEl.replaceChildren(...hist.map((e) => {
      const data = { ...(e.data || {}) };
      const reason = e.actor ? data.reason : null; // an operator's reason (a pause has its own "reason")
      if (e.actor) delete data.reason;
      let body;
      if (e.kind === "inputs_changed" || e.kind === "output_changed") body = [h("span", { class: "nbf-old" }, compact(data.old)), " → ", h("span", { class: "nbf-new" }, compact(data.new))];
      else body = Object.keys(data).length ? compact(data) : "";
      return h("li", { "data-kind": e.kind, "data-event-id": e.id }, h("span", { class: "nbf-muted" }, time(e.ts)), " ", h("b", {}, e.kind), e.actor ? h("span", { class: "nbf-muted" }, ` by ${e.actor}`) : "",
        reason ? h("span", { class: "nbf-reason" }, ` “${reason}”`) : "", " ", h("span", { class: "nbf-ev-data" }, body));
    }));
    if (d.history_omitted) historyEl.append(h("li", { class: "nbf-muted" }, `… ${fmt(d.history_omitted)} older events`));
  }

  // ---------------------------------------------------------------- JSON editor
  function openEditor(mode) {
    const sel = model.get("selected");
    const d = model.get("detail");
    if (!sel || !d) return;
    let initial;
    if (mode === "set_inputs") {
      const editable = {};
      for (const [k, v] of Object.entries(d.inputs || {})) if (!(d.readonly_inputs || []).includes(k)) editable[k] = v;
      initial = editable;
      edTitle.textContent = `Edit the inputs of ${label(sel.step, sel.key)}`;
    } else if (mode === "set_output") {
      initial = d.output;
      edTitle.textContent = `Edit the output of ${label(sel.step, sel.key)}`;
    } else {
      initial = d.has_output && d.output_editable ? d.output : null;
      edTitle.textContent = `Skip ${label(sel.step, sel.key)}: the output it stands for`;
    }
    ui.editor = { mode, step: sel.step, key: sel.key, req: null };
    edText.value = pretty(initial === undefined ? null : initial);
    edError.textContent = "";
    edReason.value = "";
    editor.hidden = false;
    edSave.disabled = false;
    edText.focus();
  }

  function validateEditor() {
    const text = edText.value;
    try {
      const value = JSON.parse(text);
      if (ui.editor && ui.editor.mode === "set_inputs" && (value === null || typeof value !== "object" || Array.isArray(value))) {
        throw new Error('the inputs must be a JSON object of input name to value, e.g. {"item": {...}}');
      }
      edError.textContent = "";
      edText.classList.remove("nbf-invalid");
      return { ok: true, value };
    } catch (e) {
      const msg = e instanceof SyntaxError ? `Invalid JSON: ${e.message}` : e.message;
      edError.textContent = msg;
      edText.classList.add("nbf-invalid");
      return { ok: false, error: msg };
    }
  }

  function saveEditor() {
    if (!ui.editor) return;
    const v = validateEditor();
    if (!v.ok) return; // invalid JSON never leaves the browser
    const { mode, step, key } = ui.editor;
    ui.editor.req = act({ action: mode, step, key, json: edText.value, reason: edReason.value.trim() || null });
    edSave.disabled = true;
  }

  function closeEditor() {
    ui.editor = null;
    editor.hidden = true;
    edError.textContent = "";
    edText.classList.remove("nbf-invalid");
  }

  // ---------------------------------------------------------------- messages
  function showMessage(m) {
    message.textContent = m && m.text ? m.text : "";
    message.className = `nbf-message${m && m.text ? (m.pending ? " pending" : m.ok ? " ok" : " error") : ""}`;
  }

  function onMessage() {
    const m = model.get("message") || {};
    showMessage(m);
    if (ui.editor && ui.editor.req && m.req === ui.editor.req) {
      if (m.ok) closeEditor();
      else edSave.disabled = false;
    }
    if (ui.clearOn && m.req === ui.clearOn) {
      if (m.ok) {
        ui.selectedKeys.clear();
        renderInstances();
      }
      ui.clearOn = null;
    }
  }

  // ---------------------------------------------------------------- wiring
  on("summary", () => {
    renderSummary();
    renderBreakpoints();
  });
  on("live", renderLive);
  on("dag", () => {
    renderDag();
    renderInstances();
  });
  on("selected_step", () => {
    renderDag();
    renderInstances();
  });
  on("instances", renderInstances);
  on("selected", () => {
    renderDetail();
    renderInstances();
  });
  on("detail", renderDetail);
  on("message", onMessage);

  renderSummary();
  renderLive();
  renderDag();
  renderInstances();
  renderDetail();
  const m0 = model.get("message");
  if (m0 && m0.text) showMessage(m0);

  return () => {
    for (const f of off) f();
    clearTimeout(filterTimer);
    if (ui.cancelArmed) clearTimeout(ui.cancelArmed);
  };
}

export default { render };
