// The nbflow debugger widget (anywidget ESM), the entry of the bundle esbuild writes to
// nbflow/notebook/static/widget.js. State arrives as traits, computed in Python by
// nbflow/notebook/controller.py; every action is one call of the widget's `act` command
// (transport.js), which the controller applies through nbflow's command path. The same view runs
// in the JupyterLab sidebar over a REST model (labextension/src/model.ts). The DOM contract
// (data-testid attributes) is listed in nbflow/notebook/widget.py.
//
// The parts: header.js (run, progress, run-wide actions), history.js (the scrubber: the run at one of
// its events), compare.js (a fork's "vs parent" panel), dag.js (the graph), breakpoints.js,
// errors.js (the Errors view), bulk.js (the verbs on the selection), table.js (the instance table,
// watch columns), timeline.js, detail.js (the instance panel, its JSON trees and editor),
// dialog.js (the one modal dialog), keys.js (keyboard shortcuts), message.js, with describe.js and
// format.js for words and numbers, dom.js for elements, types.js for shapes.
import { createBreakpoints } from "./breakpoints.js";
import { createBulk } from "./bulk.js";
import { createCompare } from "./compare.js";
import { createDag } from "./dag.js";
import { createDetail } from "./detail.js";
import { createDialogs } from "./dialog.js";
import { h } from "./dom.js";
import { createErrors } from "./errors.js";
import { createHeader } from "./header.js";
import { createHistory } from "./history.js";
import { shortcuts } from "./keys.js";
import { createMessages } from "./message.js";
import { createTable } from "./table.js";
import { createTimeline } from "./timeline.js";
import { transport } from "./transport.js";

/** Actions whose answer only the asking control shows. */
const QUIET = ["preview_edit"];

/** @typedef {import("./types.js").Model} Model */
/** @typedef {import("./types.js").Traits} Traits */
/** @typedef {import("./types.js").Invoke} Invoke */
/** @typedef {import("./types.js").Breakpoint} Breakpoint */
/** @typedef {import("./types.js").Ctx} Ctx */

/**
 * @param {{model: Model, el: HTMLElement, experimental?: {invoke?: Invoke}}} view
 * @returns {() => void} the cleanup
 */
function render({ model, el, experimental }) {
  /** @type {(() => void)[]} */
  const off = [];
  /**
   * @param {keyof Traits} name
   * @param {() => void} fn
   */
  const on = (name, fn) => {
    model.on(`change:${name}`, fn);
    off.push(() => model.off(`change:${name}`, fn));
  };
  const call = transport(experimental && experimental.invoke);
  const messages = createMessages();
  const root = h("div", { class: "nbflow-widget" });
  /** @param {HTMLElement} elem */
  const stop = (elem) => elem.addEventListener("keydown", (e) => e.stopPropagation());

  /** @type {Ctx} */
  const ctx = {
    model,
    root,
    act: async (name, args, slot) => {
      messages.place(slot);
      messages.show({ ok: true, text: "working…", pending: true });
      const answer = await call(name, args);
      messages.show(answer.text ? answer : { ok: true, text: "done" });
      return answer;
    },
    send: async (name, args = {}) => {
      const answer = await call(name, args);
      if (!answer.ok) messages.show(answer);
      return answer;
    },
    ask: (name, args = {}) => call(name, args),
    showMessage: messages.show,
    placeMessage: messages.place,
    clearMessage: messages.clear,
    breakpointsById: () => {
      /** @type {Map<number, Breakpoint>} */
      const m = new Map();
      for (const n of (model.get("dag") || {}).nodes || []) for (const b of n.breakpoints || []) m.set(b.id, b);
      return m;
    },
    stop,
    dialog: createDialogs(root, stop),
    past: () => !!(model.get("history") || {}).at,
    forked: (f) => header.showFork(f),
  };

  const header = createHeader(ctx);
  const history = createHistory(ctx);
  const compare = createCompare(ctx);
  const dag = createDag(ctx);
  const bps = createBreakpoints(ctx);
  const detail = createDetail(ctx);
  const table = createTable(ctx, detail);
  const errors = createErrors(ctx);
  const bulk = createBulk(ctx);
  const timeline = createTimeline(ctx);
  const keys = shortcuts(ctx, { table, detail, bulk });
  root.append(header.el, history.el, h("div", { class: "nbf-body" },
    h("div", { class: "nbf-left" }, dag.el, bps.el, keys.legend),
    h("div", { class: "nbf-right" }, messages.slotTop, compare.el, table.hint, table.el, errors.el, bulk.el, table.tableEl, timeline.el, detail.el)));
  el.append(root);

  const renderDetail = () => {
    detail.render();
    table.markCurrent();
  };
  const renderTable = () => {
    table.render();
    bulk.render();
  };
  // ---------------------------------------------------------------- wiring
  on("summary", () => {
    header.render();
    bps.render();
  });
  on("live", header.renderLive);
  on("dag", () => {
    dag.render();
    bps.render();
    renderTable();
    renderDetail();
  });
  on("selected_step", () => {
    dag.render();
    bps.render();
    renderTable();
    errors.render();
    timeline.render();
  });
  on("instances", () => {
    renderTable();
    detail.render(); // its row may say its code changed before the detail does
    detail.followRows();
  });
  on("selected", () => {
    renderDetail();
    renderTable();
  });
  on("errors", () => {
    errors.render();
    table.render();
  });
  on("selection", () => {
    renderTable();
    errors.render();
  });
  on("timeline", timeline.render);
  // the moment shown: what the verbs may do depends on it (the past is read-only)
  on("history", () => {
    history.render();
    header.render();
    bps.render();
    renderTable();
    renderDetail();
  });
  on("diff", () => {
    compare.render();
    header.render();
  });
  on("detail", renderDetail);
  // what every view of the widget is told: an answer, or the outcome of a command sent earlier (a
  // question's answer, a bulk edit's preview, is the dialog's to show)
  on("message", () => {
    const m = model.get("message") || {};
    if (!QUIET.includes(m.action || "")) messages.show(m);
    // a step over another process applied: the panel follows to what it pauses, as for an answer
    if (m.action === "step_over" && m.ok) void detail.follow(m.text || null);
  });

  header.render();
  header.renderLive();
  history.render();
  compare.render();
  dag.render();
  bps.render();
  renderTable();
  errors.render();
  timeline.render();
  renderDetail();
  const m0 = model.get("message");
  if (m0 && m0.text && !QUIET.includes(m0.action || "")) messages.show(m0);

  return () => {
    for (const f of off) f();
    table.dispose();
    header.dispose();
    messages.dispose();
    keys.dispose();
    ctx.dialog.close();
  };
}

export default { render };
