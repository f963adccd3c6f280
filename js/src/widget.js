// The nbflow debugger widget (anywidget ESM). State arrives as traits (see nbflow/notebook/widget.py);
// every action is sent to Python with model.send({action, ...}) and goes through nbflow's command path.
// The message protocol and the DOM contract (data-testid attributes) are listed in nbflow/notebook/widget.py.
import dagre from "@dagrejs/dagre";

// ------------------------------------------------------------------ the traits' shapes (checked by `npm run typecheck`)
/** @typedef {string | number | null} Key  an instance's key as the rows show it (null: a task's single instance) */
/** @typedef {Record<string, number>} Counts  instances per status */
/** @typedef {string | number | null | undefined} When  an ISO timestamp, or epoch seconds (event data) */

/**
 * @typedef {object} Breakpoint  one breakpoint on a DAG node, with its state in this run
 * @property {number} id
 * @property {Key} [key]  only this key (null: every instance of the step)
 * @property {string} when  "before", "after" or "error"
 * @property {string | null} [condition]  a Python condition on the inputs
 * @property {string} scope  "run" or "workflow"
 * @property {string} state  "hit" (holding instances) or "set"
 * @property {number} held  how many instances it holds
 */

/**
 * @typedef {object} DagNode
 * @property {string} step
 * @property {string} kind  "task", "foreach", "approval" or "wait"
 * @property {Counts} counts
 * @property {number} total
 * @property {string} status  nbflow.notebook.render.node_status of the counts
 * @property {Breakpoint[]} breakpoints
 * @property {{text: string}[]} [uses]  what the step reads from the notebook
 */

/** @typedef {{nodes: DagNode[], edges: [string, string][]}} Dag */

/**
 * @typedef {object} Summary  the run's header
 * @property {string} [id]
 * @property {string} [workflow]
 * @property {string} [version]
 * @property {string} status
 * @property {boolean} [interrupted]
 * @property {{text?: string}} [owner]
 * @property {{done: number, total: number}} [progress]
 * @property {Counts} counts
 */

/** @typedef {{type: string, message: string, traceback?: string}} ErrorInfo */

/**
 * @typedef {object} InstanceRow  one row of the instance table (nbflow.views.instance_view)
 * @property {string} step
 * @property {Key} key
 * @property {string} status
 * @property {number | null} attempt
 * @property {string | null} pause_reason  "before", "after: ...", "approval", "signal: NAME", ...
 * @property {ErrorInfo | null} error
 * @property {number[]} [held_by]  the ids of the breakpoints holding it (0: break on error)
 * @property {string[]} [verbs]  the verbs its state accepts
 * @property {string | null} started_at
 * @property {string | null} finished_at
 * @property {string | null} next_attempt_at
 * @property {string | null} deadline
 */

/**
 * @typedef {object} InstancePage  one page of the selected step's instances ({} when no step is selected)
 * @property {number} [offset]
 * @property {number} [limit]
 * @property {number} [total]
 * @property {string} [status]  the status filter
 * @property {string} [text]  the text filter
 * @property {InstanceRow[]} [rows]
 */

/** @typedef {{step: string, key: Key}} Selected  the selected instance's address */

/**
 * @typedef {object} EventData  what an event records (the fields the history shows; others are listed as is)
 * @property {number} [attempt]
 * @property {number} [delay]
 * @property {number} [timeout]
 * @property {string} [error]
 * @property {string} [name]
 * @property {string} [reason]
 * @property {string} [when]
 * @property {number[]} [breakpoints]
 * @property {unknown} [output]
 * @property {unknown} [old]
 * @property {unknown} [new]
 * @property {unknown} [payload]
 * @property {string} [previous_status]
 * @property {string} [deadline]
 * @property {string} [comment]
 * @property {number} [items]
 * @property {string} [verb]
 * @property {string} [result]
 * @property {string} [message]
 */

/** @typedef {{id: number, ts: string | null, kind: string, actor: string | null, data?: EventData & Record<string, unknown>}} HistoryEvent */

/**
 * @typedef {object} Attempt
 * @property {number | null} attempt
 * @property {string | null} started
 * @property {string | null} finished
 * @property {string | null} outcome  the event kind that ended it (null: still running)
 * @property {string | null} error
 */

/**
 * @typedef {object} DetailFields  what nbflow.views.instance_detail adds to the row
 * @property {boolean} [missing]  the instance does not exist yet (then only step and key are set)
 * @property {ErrorInfo | null} error
 * @property {Record<string, unknown>} [inputs]
 * @property {string[]} [readonly_inputs]  inputs that are not editable JSON
 * @property {unknown} [output]
 * @property {boolean} [output_editable]
 * @property {boolean} [has_output]
 * @property {string} [logs]
 * @property {boolean} [logs_truncated]
 * @property {string | null} [token]  a waiting instance's signal token
 * @property {Attempt[]} [attempts]
 * @property {HistoryEvent[]} [history]
 * @property {number} [history_omitted]
 */

/** @typedef {Omit<InstanceRow, "error"> & DetailFields} Detail  the selected instance */

/** @typedef {{seq?: number, ok?: boolean, text?: string, action?: string, req?: string, pending?: boolean}} Message */

/**
 * @typedef {object} Traits  the model's state (nbflow/notebook/widget.py's RunWidget, labextension/src/model.ts)
 * @property {string} run_id
 * @property {Summary} summary
 * @property {Dag} dag
 * @property {string | null} selected_step
 * @property {InstancePage} instances
 * @property {Selected | null} selected
 * @property {Detail | null} detail
 * @property {Message} message
 * @property {boolean} live
 */

/**
 * @typedef {object} Model  the part of anywidget's model API the view uses
 * @property {<N extends keyof Traits>(name: N) => Traits[N]} get
 * @property {(event: string, fn: () => void) => void} on
 * @property {(event: string, fn: () => void) => void} off
 * @property {(content: Record<string, unknown>) => void} send
 */

/** @typedef {string | number | boolean | null | undefined | ((ev: Event) => unknown)} AttrValue */
/** @typedef {Record<string, AttrValue>} Attrs  see setAttrs */
/** @typedef {Node | string | number | boolean | null | undefined} Child  null and false are left out */

const STATUSES = ["pending", "ready", "running", "retrying", "paused", "waiting", "succeeded", "failed", "skipped", "cancelled"];
// the order of the stacked progress bar and of a node's mini bar
const BAR_ORDER = ["succeeded", "skipped", "failed", "cancelled", "paused", "waiting", "running", "retrying", "ready", "pending"];
const TERMINAL_RUN = ["succeeded", "failed", "cancelled"];
const NODE_W = 176;
/** @type {Record<string, number>} */
const NODE_H = { task: 46, foreach: 62 };
const SVG_NS = "http://www.w3.org/2000/svg";
const HISTORY_SHOWN = 6; // newest events shown before "show older"
const SHORT_LOGS = 6; // logs up to this many lines start unfolded

// ------------------------------------------------------------------ tiny DOM helpers
/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/**
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {SVGElementTagNameMap[K]}
 */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/**
 * class, text (the content), on<event> (a listener), testid (data-testid), or an attribute (true: present).
 * @param {Element} el
 * @param {Attrs} attrs
 */
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") el.setAttribute("class", String(v));
    else if (k === "text") el.textContent = String(v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === "testid") el.setAttribute("data-testid", String(v));
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

/** @param {number | null | undefined} n */
const fmt = (n) => Number(n || 0).toLocaleString("en-US");
/**
 * @param {number | null | undefined} n
 * @param {string} word
 */
const plural = (n, word) => `${fmt(n)} ${word}${n === 1 ? "" : "s"}`;
/** @param {unknown} text */
const quote = (text) => `“${text}”`;

/** @param {Counts | undefined} counts */
function countsText(counts, sep = " · ") {
  const parts = Object.entries(counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return parts.map(([st, n]) => `${fmt(n)} ${st}`).join(sep) || "not started";
}

/** @param {unknown} value */
function pretty(value) {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value, null, 2);
  } catch (e) {
    return String(value);
  }
}

/** @param {unknown} value */
function compact(value, max = 240) {
  let text;
  try {
    text = value === undefined ? "—" : JSON.stringify(value);
  } catch (e) {
    text = String(value);
  }
  return text.length > max ? text.slice(0, max) + "…" : text;
}

/** @param {string | null | undefined} text */
function cut(text, max = 160) {
  text = String(text ?? "");
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** @param {When} t */
function toDate(t) {
  if (t == null || t === "") return null;
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t); // numbers are epoch seconds (event data)
  return isNaN(d.getTime()) ? null : d;
}

// 20:22:24.151 (history) and 20:22:24 (everything else), in the browser's time zone
/** @param {When} t */
function time(t) {
  const d = toDate(t);
  return d ? d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0") : "";
}

/** @param {When} t */
function clock(t) {
  const d = toDate(t);
  return d ? d.toLocaleTimeString([], { hour12: false }) : "";
}

/** @param {number | null | undefined} x seconds */
function secs(x) {
  if (x == null || isNaN(x)) return "";
  x = Number(x);
  if (x < 0.001) return "<1 ms";
  if (x < 0.1) return `${Math.round(x * 1000)} ms`;
  if (x < 1) return `${+x.toFixed(2)} s`;
  if (x < 60) return `${+x.toFixed(1)} s`;
  if (x < 3600) return `${Math.floor(x / 60)} min ${Math.round(x % 60)} s`;
  return `${Math.floor(x / 3600)} h ${Math.round((x % 3600) / 60)} min`;
}

/**
 * @param {When} a
 * @param {When} b
 */
function duration(a, b) {
  const da = toDate(a);
  const db = toDate(b);
  return da && db ? secs((db.getTime() - da.getTime()) / 1000) : "";
}

/**
 * @param {string} step
 * @param {Key | undefined} key
 */
const label = (step, key) => (key == null ? step : `${step}:${key}`);
/** @param {ErrorInfo | string | null | undefined} e */
const errText = (e) => (!e ? "" : typeof e === "string" ? e : `${e.type}: ${e.message}`);
/** @type {(v: unknown) => v is Record<string, unknown>} */
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// ------------------------------------------------------------------ words for pauses, breakpoints, events
/** @type {Record<string, string>} */
const WHEN = { before: "before", after: "after", error: "on error" };
/** @type {Record<string, string>} */
const WHEN_LONG = { before: "before its body", after: "after its body", error: "on an error" };

/** "before" from a pause reason "before" or "before: breakpoint condition ... raised ..."
 * @param {string | null | undefined} reason
 */
const pauseWhen = (reason) => String(reason || "").split(":")[0];
/** @param {string | null | undefined} reason */
const pauseExtra = (reason) => {
  const text = String(reason || "");
  const at = text.indexOf(": ");
  return at >= 0 ? text.slice(at + 2) : "";
};

/** One breakpoint id as words: 0 is the run's break_on_error flag.
 * @param {number} id
 * @param {Map<number, Breakpoint>} bps
 */
function bpText(id, bps) {
  if (id === 0) return "break on error";
  const b = bps.get(id);
  if (!b) return `breakpoint #${id}`;
  return `breakpoint #${id}${b.key != null ? ` (key ${b.key})` : ""}${b.condition ? ` if ${b.condition}` : ""}`;
}

/**
 * @param {number[] | undefined} ids
 * @param {Map<number, Breakpoint>} bps
 */
const heldText = (ids, bps) => (ids || []).map((id) => bpText(id, bps)).join(", ");

/** Why an instance has made no attempt.
 * @param {string} status
 * @param {string | undefined} kind
 */
function notStarted(status, kind) {
  if (kind === "approval" || kind === "wait") return "none: it runs no code";
  return ["pending", "ready", "paused", "waiting"].includes(status) ? "not started yet" : "none";
}

/** What the table's detail column says about a row: what the status does not already say.
 * @param {InstanceRow} r
 * @param {Map<number, Breakpoint>} bps
 */
function rowDetail(r, bps) {
  const err = errText(r.error);
  switch (r.status) {
    case "paused": {
      const when = pauseWhen(r.pause_reason);
      const held = r.held_by || [];
      // "break on error" already says when
      const parts = when === "error" && held.length === 1 && held[0] === 0 ? [] : [WHEN[when] || when];
      if (held.length) parts.push(heldText(held, bps));
      const extra = pauseExtra(r.pause_reason);
      if (extra) parts.push(extra);
      if (when === "error" && err) parts.push(err);
      return parts.join(" · ");
    }
    case "waiting": {
      const what = r.pause_reason === "approval" ? "needs a decision" : `signal ${quote(String(r.pause_reason || "").replace(/^signal: /, ""))}`;
      return what + (r.deadline ? ` · until ${clock(r.deadline)}` : "");
    }
    case "retrying":
      return (r.next_attempt_at ? `next attempt at ${clock(r.next_attempt_at)}` : "waiting to retry") + (err ? ` · ${err}` : "");
    case "failed":
      return err;
    case "running":
      return r.started_at ? `since ${clock(r.started_at)}` : "";
    case "succeeded":
      return duration(r.started_at, r.finished_at) ? `took ${duration(r.started_at, r.finished_at)}` : "";
    case "ready":
      return "queued";
    default:
      return err;
  }
}

/** The instance panel's one-line explanation of where the instance stands.
 * @param {Detail} d
 * @param {Map<number, Breakpoint>} bps
 */
function whyText(d, bps) {
  const err = errText(d.error);
  switch (d.status) {
    case "paused": {
      const when = pauseWhen(d.pause_reason);
      const by = d.held_by && d.held_by.length ? ` — ${heldText(d.held_by, bps)}` : "";
      const extra = pauseExtra(d.pause_reason);
      const hint = when === "after" ? " Its output can be edited before it goes on." : when === "error" ? " Resume lets the error go on; or edit the inputs and retry, or skip." : "";
      return `Paused ${WHEN_LONG[when] || when}${by}${extra ? ` (${extra})` : ""}.${hint}`;
    }
    case "waiting":
      if (d.pause_reason === "approval") return `Waiting for a decision${d.deadline ? ` until ${clock(d.deadline)}` : ""}: approve or reject it below.`;
      return `Waiting for signal ${quote(String(d.pause_reason || "").replace(/^signal: /, ""))}${d.deadline ? ` until ${clock(d.deadline)}` : ""}: deliver it with the token below.`;
    case "retrying":
      return `Attempt ${d.attempt} failed${err ? ` (${cut(err, 120)})` : ""}; ${d.next_attempt_at ? `next attempt at ${clock(d.next_attempt_at)}` : "it will be tried again"}.`;
    case "failed":
      return d.attempt ? `Failed after ${plural(d.attempt, "attempt")}.` : "Failed before it could start.";
    case "running":
      return `Running attempt ${d.attempt || 1}${d.started_at ? ` since ${clock(d.started_at)}` : ""}.`;
    case "succeeded":
      return `Succeeded${d.attempt ? ` on attempt ${d.attempt}` : ""}${duration(d.started_at, d.finished_at) ? ` in ${duration(d.started_at, d.finished_at)}` : ""}.`;
    case "skipped":
      return "Skipped: downstream received the output given for it.";
    case "cancelled":
      return "Cancelled.";
    case "ready":
      return "Queued: it starts when a worker is free.";
    case "pending":
      return "Not started yet: it waits for its upstream steps.";
    default:
      return "";
  }
}

/** Changed leaves between two JSON values: [[path, old, new], ...] (null when there are too many).
 * @param {unknown} a
 * @param {unknown} b
 * @returns {[string, unknown, unknown][] | null}
 */
function changes(a, b, max = 6) {
  /** @type {[string, unknown, unknown][]} */
  const out = [];
  /**
   * @param {unknown} x
   * @param {unknown} y
   * @param {string} path
   */
  const walk = (x, y, path) => {
    if (out.length > max) return;
    if (isObj(x) && isObj(y)) {
      for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) walk(x[k], y[k], path ? `${path}.${k}` : k);
      return;
    }
    if (JSON.stringify(x) === JSON.stringify(y)) return;
    out.push([path, x, y]);
  };
  walk(a, b, "");
  return out.length > max ? null : out;
}

/** old → new, legibly: one line per changed field (muted old value, normal new value).
 * @param {unknown} oldV
 * @param {unknown} newV
 */
function diffBlock(oldV, newV) {
  const diff = changes(oldV, newV);
  const box = h("div", { class: "nbf-diff", title: `was: ${compact(oldV, 2000)}\nnow: ${compact(newV, 2000)}` });
  if (diff === null) {
    box.append(
      h("div", {}, h("span", { class: "nbf-diff-label" }, "was"), h("code", { class: "nbf-diff-old" }, compact(oldV, 200))),
      h("div", {}, h("span", { class: "nbf-diff-label" }, "now"), h("code", { class: "nbf-diff-new" }, compact(newV, 200))));
  } else if (!diff.length) {
    box.append(h("span", { class: "nbf-muted" }, "(the same value)"));
  } else {
    for (const [path, o, n] of diff) {
      box.append(h("div", {}, path ? h("span", { class: "nbf-diff-path" }, path) : "",
        h("code", { class: "nbf-diff-old" }, compact(o, 80)), h("span", { class: "nbf-diff-arrow" }, " → "), h("code", { class: "nbf-diff-new" }, compact(n, 80))));
    }
  }
  return box;
}

/**
 * @param {string} name
 * @param {unknown} v
 */
const valueBlock = (name, v) => h("div", { class: "nbf-diff", title: compact(v, 2000) }, h("span", { class: "nbf-diff-label" }, name), h("code", { class: "nbf-diff-new" }, compact(v, 160)));

/** A history event as a sentence: {head, tail, block}; the actor goes between head and tail.
 * @param {HistoryEvent} e
 * @param {{bps: Map<number, Breakpoint>, kind: string}} ctx
 * @returns {{head: string, tail?: string, block?: HTMLElement | null}} */
function describeEvent(e, ctx) {
  /** @type {EventData & Record<string, unknown>} */
  const d = e.data || {};
  const err = d.error ? `: ${cut(d.error, 200)}` : "";
  switch (e.kind) {
    case "started":
      return { head: `started attempt ${d.attempt ?? "?"}` };
    case "attempt_failed":
      return { head: `attempt ${d.attempt ?? "?"} failed`, tail: err };
    case "retrying":
      return { head: `retrying${d.delay != null ? ` in ${secs(d.delay)}` : ""}`, tail: d.error ? ` after ${cut(d.error, 200)}` : "" };
    case "succeeded":
      return { head: d.attempt != null ? `succeeded (attempt ${d.attempt})` : "succeeded" };
    case "failed":
      return { head: `failed${d.attempt ? ` after attempt ${d.attempt}` : ""}`, tail: err };
    case "timed_out":
      if (d.timeout != null) return { head: `attempt ${d.attempt ?? "?"} timed out after ${secs(d.timeout)}` };
      return { head: ctx.kind === "approval" || d.name === "approval" ? "timed out waiting for a decision" : `timed out waiting for signal ${quote(d.name)}` };
    case "interrupted":
      return { head: `attempt ${d.attempt ?? "?"} interrupted (its process stopped)` };
    case "paused": {
      const ids = d.breakpoints || [];
      const extra = pauseExtra(d.reason);
      return { head: `paused ${WHEN[String(d.when)] || d.when || ""}${ids.length ? ` · ${heldText(ids, ctx.bps)}` : ""}${extra ? ` · ${extra}` : ""}` };
    }
    case "resumed":
      return { head: "resumed", tail: d.when ? ` (was paused ${WHEN[d.when] || d.when})` : "" };
    case "skipped":
      return { head: "skipped", block: "output" in d ? valueBlock("output", d.output) : null };
    case "retry_requested":
      return { head: "retry requested", tail: d.previous_status ? ` (was ${d.previous_status}${d.attempt ? ` after attempt ${d.attempt}` : ""})` : "" };
    case "inputs_changed":
      return { head: "inputs changed", block: diffBlock(d.old, d.new) };
    case "output_changed":
      return { head: "output changed", block: diffBlock(d.old, d.new) };
    case "cancelled":
      return { head: "cancelled" };
    case "waiting": {
      const until = d.deadline ? ` until ${clock(d.deadline)}` : "";
      return { head: ctx.kind === "approval" ? `waiting for a decision${until}` : `waiting for signal ${quote(d.name)}${until}` };
    }
    case "approved":
      return { head: "approved", tail: d.comment ? `: ${quote(d.comment)}` : "", block: d.payload != null ? valueBlock("payload", d.payload) : null };
    case "rejected":
      return { head: "rejected", tail: d.comment ? `: ${quote(d.comment)}` : "" };
    case "signal_received":
      return { head: `signal ${quote(d.name)} received`, block: d.payload !== undefined ? valueBlock("payload", d.payload) : null };
    case "signal_duplicate":
      return { head: `duplicate signal ${quote(d.name)} ignored` };
    case "signal_refused":
      return { head: `signal ${quote(d.name)} refused`, tail: d.reason ? ` (${d.reason})` : "" };
    case "checkpoint":
      return { head: `checkpoint saved (attempt ${d.attempt ?? "?"})` };
    case "expanded":
      return { head: `expanded into ${plural(d.items, "item")}` };
    case "command":
      return { head: `command ${d.verb}`, tail: `: ${d.result === "refused" ? "refused — " : ""}${cut(d.message, 200)}` };
    default: {
      const rest = Object.entries(d).filter(([k]) => !(e.actor && k === "reason"))
        .map(([k, v]) => `${k}: ${typeof v === "string" ? cut(v, 80) : compact(v, 80)}`).join(" · ");
      return { head: String(e.kind).replaceAll("_", " "), tail: rest ? ` — ${rest}` : "" };
    }
  }
}

/**
 * @param {string} text
 * @param {HTMLInputElement} fallbackInput
 * @returns {Promise<boolean>}
 */
async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    // not a secure context, or no permission: select the text and use the old command
    fallbackInput.focus();
    fallbackInput.select();
    try {
      return document.execCommand("copy");
    } catch (e2) {
      return false;
    }
  }
}

// ------------------------------------------------------------------ the view
/**
 * @typedef {object} Layout  the DAG's dagre layout, kept while the graph's structure stays the same
 * @property {number} width
 * @property {number} height
 * @property {Map<string, Box>} nodes
 * @property {{v: string, w: string, points: import("@dagrejs/dagre").Point[] | undefined}[]} edges
 */

/** @typedef {{x: number, y: number, width: number, height: number}} Box  a laid-out node (x, y: its centre) */

/** @typedef {{mode: string, step: string, key: Key, req: string | null}} Editor  the open JSON editor */

/** @typedef {HTMLTableRowElement & {_box: HTMLInputElement, _key: Key, _step: string}} RowEl  an instance row */

/**
 * @typedef {object} UiState  what the view remembers between renders
 * @property {Set<Key>} selectedKeys  the ticked rows (of keysStep)
 * @property {string | null} keysStep
 * @property {Editor | null} editor
 * @property {ReturnType<typeof setTimeout> | null} cancelArmed  the first click on "Cancel run" expires
 * @property {string | null} layoutKey
 * @property {Layout | null} layout
 * @property {Map<string, SVGGElement>} nodeEls
 * @property {string | null} detailFor  the instance the panel shows
 * @property {boolean} historyAll
 * @property {HTMLElement | null} msgSlot
 * @property {string | null} [clearOn]  the request whose success clears the ticked rows
 */

/**
 * @param {{model: Model, el: HTMLElement}} view
 * @returns {() => void} the cleanup
 */
function render({ model, el }) {
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
  let reqSeq = 0;
  /** @type {UiState} */
  const ui = { selectedKeys: new Set(), keysStep: null, editor: null, cancelArmed: null, layoutKey: null, layout: null, nodeEls: new Map(), detailFor: null, historyAll: false, msgSlot: null };
  /** @param {HTMLElement} elem */
  const stop = (elem) => elem.addEventListener("keydown", (e) => e.stopPropagation()); // keep Jupyter's shortcuts out

  /**
   * @param {Record<string, unknown>} msg
   * @returns {string} the request id
   */
  const send = (msg) => {
    const req = `${Date.now().toString(36)}-${++reqSeq}`;
    model.send({ ...msg, req });
    return req;
  };
  // an action: its result shows in `slot`, next to where it was asked for
  /**
   * @param {Record<string, unknown>} msg
   * @param {HTMLElement} slot
   */
  const act = (msg, slot) => {
    placeMessage(slot);
    showMessage({ ok: true, text: "working…", pending: true });
    return send(msg);
  };
  const breakpointsById = () => {
    /** @type {Map<number, Breakpoint>} */
    const m = new Map();
    for (const n of (model.get("dag") || {}).nodes || []) for (const b of n.breakpoints || []) m.set(b.id, b);
    return m;
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
  const slotHeader = h("div", { class: "nbf-msg-slot" });
  const resumeAll = h("button", { class: "nbf-btn", testid: "resume-all", title: "resume every paused instance of the run", onclick: () => act({ action: "resume_all" }, slotHeader) }, "Resume all paused");
  const cancelRun = h("button", { class: "nbf-btn nbf-danger", testid: "cancel-run", title: "cancel the run (click twice)", onclick: onCancel }, "Cancel run");

  const header = h("div", { class: "nbf-header" },
    h("div", { class: "nbf-title" }, h("span", { class: "nbf-logo" }, "nbflow"), runId, wfName, badge, interrupted, liveDot),
    h("div", { class: "nbf-progress-row" }, h("div", { class: "nbf-progress-info" }, bar, progress, countsEl), h("div", { class: "nbf-run-actions" }, resumeAll, cancelRun)),
    ownerEl, slotHeader,
  );

  // DAG + breakpoints
  const svg = s("svg", { class: "nbf-svg", role: "img" });
  const legend = h("div", { class: "nbf-legend", hidden: true },
    h("span", { class: "nbf-legend-item" }, h("span", { class: "nbf-dot" }), "breakpoint set"),
    h("span", { class: "nbf-legend-item" }, h("span", { class: "nbf-dot nbf-hit" }), "hit (holding instances)"));
  const dagBox = h("div", { class: "nbf-dag", testid: "dag" }, svg, legend);
  const bpTitle = h("div", { class: "nbf-section-title" });
  const bpList = h("ul", { class: "nbf-bp-list", testid: "bp-list" });
  const bpKey = h("input", { class: "nbf-input nbf-bp-key", testid: "bp-key", placeholder: "all keys", title: "only this key (empty: every instance of the step)", size: 7 });
  const bpWhen = h("select", { class: "nbf-input", testid: "bp-when", title: "pause before its body, after it (to edit the output), or on an error" }, ["before", "after", "error"].map((w) => h("option", { value: w }, w === "error" ? "on error" : w)));
  const bpCond = h("input", { class: "nbf-input nbf-grow", testid: "bp-condition", placeholder: "if … (optional)", title: "a Python condition on the inputs, e.g. item['x'] > 3 (empty: always)" });
  const slotBp = h("div", { class: "nbf-msg-slot" });
  const bpAdd = h("button", { class: "nbf-btn", testid: "add-breakpoint", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    act({ action: "add_breakpoint", step, key: bpKey.value.trim() || null, when: bpWhen.value, condition: bpCond.value.trim() || null }, slotBp);
  } }, "Add breakpoint");
  const bpRemove = h("button", { class: "nbf-btn", testid: "remove-breakpoint", title: "remove the breakpoints on this step (or on the key given)", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    act({ action: "remove_breakpoint", step, key: bpKey.value.trim() || null }, slotBp);
  } }, "Remove");
  const bpBox = h("div", { class: "nbf-bp", hidden: true }, bpTitle, bpList,
    h("div", { class: "nbf-row" }, bpWhen, bpKey, bpCond),
    h("div", { class: "nbf-row" }, bpAdd, bpRemove), slotBp);
  const left = h("div", { class: "nbf-left" }, dagBox, bpBox);

  // instances
  const stepTitle = h("span", { class: "nbf-step-title" });
  const filterStatus = h("select", { class: "nbf-input", testid: "filter-status", onchange: () => sendFilter() });
  const filterText = h("input", { class: "nbf-input nbf-grow", testid: "filter-text", placeholder: "filter by key or error", type: "search" });
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let filterTimer = undefined;
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
  const slotTable = h("div", { class: "nbf-msg-slot" });
  const resumeSelected = h("button", { class: "nbf-btn", testid: "resume-selected", onclick: () => {
    const step = model.get("selected_step");
    placeMessage(slotTable);
    if (!step || !ui.selectedKeys.size) return showMessage({ ok: false, text: "no instance selected: tick the rows to resume" });
    const req = act({ action: "resume", step, keys: [...ui.selectedKeys] }, slotTable);
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
    h("thead", {}, h("tr", {}, h("th", { class: "nbf-c-check" }, pageAll), h("th", { class: "nbf-c-key" }, "key"), h("th", { class: "nbf-c-status" }, "status"),
      h("th", { class: "nbf-c-num", title: "attempts made" }, "att."), h("th", { class: "nbf-c-detail" }, "detail"))),
    tbody);
  const pagePrev = h("button", { class: "nbf-btn nbf-small", testid: "page-prev", onclick: () => {
    const p = model.get("instances");
    send({ action: "page", offset: Math.max((p.offset || 0) - (p.limit || 20), 0) });
  } }, "‹ Prev");
  const pageNext = h("button", { class: "nbf-btn nbf-small", testid: "page-next", onclick: () => {
    const p = model.get("instances");
    send({ action: "page", offset: (p.offset || 0) + (p.limit || 20) });
  } }, "Next ›");
  const pageInfo = h("span", { class: "nbf-page-info", testid: "page-info" });
  const instBox = h("div", { class: "nbf-instances-box", hidden: true },
    h("div", { class: "nbf-row nbf-filter-row" }, stepTitle, filterStatus, filterText, resumeSelected),
    slotTable,
    h("div", { class: "nbf-table-wrap" }, table),
    h("div", { class: "nbf-pager" }, pagePrev, pageInfo, pageNext));
  const hint = h("div", { class: "nbf-hint" }, "Click a node of the graph to see its instances.");

  // instance panel
  const panelTitle = h("span", { class: "nbf-panel-title" });
  const panelStatus = h("span", { class: "nbf-pill" });
  const whyEl = h("div", { class: "nbf-why", testid: "why" });
  const closePanel = h("button", { class: "nbf-btn nbf-small nbf-ghost", title: "close", onclick: () => send({ action: "close_instance" }) }, "✕");
  const target = () => {
    const d = model.get("selected");
    return d ? { step: d.step, key: d.key } : null;
  };
  const slotPanel = h("div", { class: "nbf-msg-slot" });
  /**
   * @param {string} testid
   * @param {string} text
   * @param {string} title
   * @param {() => unknown} fn
   */
  const actionBtn = (testid, text, title, fn) => h("button", { class: "nbf-btn", testid, title, onclick: fn }, text);
  const bResume = actionBtn("resume-one", "Resume", "let this instance go on", () => target() && act({ action: "resume", ...target() }, slotPanel));
  const bRetry = actionBtn("retry", "Retry", "run it again with today's code and its current inputs", () => target() && act({ action: "retry", ...target() }, slotPanel));
  const bSkip = actionBtn("skip", "Skip…", "skip it, giving the output it stands for", () => openEditor("skip"));
  const bInputs = actionBtn("edit-inputs", "Edit inputs…", "change its inputs (paused before its body, on an error, or failed)", () => openEditor("set_inputs"));
  const bOutput = actionBtn("edit-output", "Edit output…", "change its output (paused after its body)", () => openEditor("set_output"));
  const verbButtons = { resume: bResume, retry: bRetry, skip: bSkip, set_inputs: bInputs, set_output: bOutput };
  const actionsRow = h("div", { class: "nbf-actions" }, bResume, bRetry, bSkip, bInputs, bOutput);

  // an approval gate that waits: approve or reject, with a comment and an optional JSON payload
  const apComment = h("input", { class: "nbf-input nbf-grow", testid: "approval-comment", placeholder: "comment (optional, recorded with the decision)" });
  const apPayload = h("textarea", { class: "nbf-editor-text nbf-payload", testid: "approval-payload", spellcheck: "false", rows: 2, placeholder: "payload (optional JSON): becomes the gate's output, e.g. {\"region\": \"eu\"}" });
  const apError = h("div", { class: "nbf-json-error", testid: "approval-error" });
  /** @param {"approve" | "reject"} verb */
  const decide = (verb) => {
    const t = target();
    if (!t) return;
    const text = apPayload.value.trim();
    if (verb === "approve" && text) {
      try {
        JSON.parse(text);
      } catch (e) {
        apError.textContent = `Invalid JSON: ${/** @type {Error} */ (e).message}`;
        apPayload.classList.add("nbf-invalid");
        return; // invalid JSON never leaves the browser
      }
    }
    apError.textContent = "";
    apPayload.classList.remove("nbf-invalid");
    act({ action: verb, step: t.step, comment: apComment.value.trim() || null, json: verb === "approve" ? text || null : null }, slotPanel);
  };
  apPayload.addEventListener("input", () => {
    apError.textContent = "";
    apPayload.classList.remove("nbf-invalid");
  });
  const bApprove = h("button", { class: "nbf-btn nbf-primary", testid: "approve", title: "approve this gate (the payload, if any, becomes its output)", onclick: () => decide("approve") }, "Approve");
  const bReject = h("button", { class: "nbf-btn nbf-danger", testid: "reject", title: "reject this gate: it fails and what depends on it is cancelled", onclick: () => decide("reject") }, "Reject");
  const approvalBox = h("div", { class: "nbf-callout", testid: "approval", hidden: true },
    h("div", { class: "nbf-row" }, apComment), apPayload, apError, h("div", { class: "nbf-row" }, bApprove, bReject));

  // a wait for a signal: the token to hand to whoever sends it
  const tokenEl = h("input", { class: "nbf-input nbf-grow nbf-token", testid: "token", readonly: true, title: "the signal's correlation token" });
  const copyToken = h("button", { class: "nbf-btn", testid: "copy-token", title: "copy the token to the clipboard", onclick: async () => {
    const ok = await copyText(tokenEl.value, tokenEl);
    copyToken.textContent = ok ? "Copied ✓" : "Press Ctrl+C";
    setTimeout(() => (copyToken.textContent = "Copy"), 1800);
  } }, "Copy");
  const tokenHint = h("div", { class: "nbf-muted nbf-token-hint" });
  const signalBox = h("div", { class: "nbf-callout", testid: "signal", hidden: true }, h("div", { class: "nbf-row" }, h("span", { class: "nbf-field-label" }, "token"), tokenEl, copyToken), tokenHint);

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
  });
  for (const elem of [edText, edReason, filterText, bpCond, bpKey, apComment, apPayload, tokenEl]) stop(elem);
  const editor = h("div", { class: "nbf-editor", hidden: true }, edTitle, edText, edError, h("div", { class: "nbf-row" }, edReason, edSave, edCancel));

  const inputsEl = h("pre", { class: "nbf-pre", testid: "inputs" });
  const outputEl = h("pre", { class: "nbf-pre", testid: "output" });
  const errorLine = h("div", { class: "nbf-error-line" });
  const tbSummary = h("summary", {});
  const tbPre = h("pre", { class: "nbf-pre nbf-traceback" });
  const tbFold = h("details", { class: "nbf-fold", testid: "traceback" }, tbSummary, tbPre);
  const errorEl = h("div", { class: "nbf-error", testid: "error" }, errorLine, tbFold);
  const logsEl = h("pre", { class: "nbf-pre nbf-logs", testid: "logs" });
  const logsSummary = h("summary", { class: "nbf-section-title" });
  const logsFold = h("details", { class: "nbf-section nbf-fold" }, logsSummary, logsEl);
  const attemptsEl = h("div", { class: "nbf-attempts", testid: "attempts" });
  const historyEl = h("ol", { class: "nbf-history", testid: "history" });
  const historyMore = h("button", { class: "nbf-btn nbf-small nbf-ghost nbf-more", onclick: () => {
    ui.historyAll = !ui.historyAll;
    renderDetail();
  } });
  /**
   * @param {string} title
   * @param {HTMLElement} body
   * @param {Attrs} [extra]
   */
  const section = (title, body, extra = {}) => h("div", { class: "nbf-section", ...extra }, h("div", { class: "nbf-section-title" }, title), body);
  const errorSection = section("Error", errorEl);
  const panel = h("div", { class: "nbf-panel", testid: "instance-panel", hidden: true },
    h("div", { class: "nbf-panel-head" }, panelTitle, panelStatus, h("span", { class: "nbf-spacer" }), closePanel),
    whyEl,
    actionsRow,
    slotPanel,
    approvalBox,
    signalBox,
    editor,
    h("div", { class: "nbf-grid2" }, section("Inputs", inputsEl), section("Output", outputEl)),
    errorSection,
    h("div", { class: "nbf-grid2" }, logsFold, section("Attempts", attemptsEl)),
    section("History", h("div", {}, historyEl, historyMore)));

  const slotTop = h("div", { class: "nbf-msg-slot" });
  const right = h("div", { class: "nbf-right" }, slotTop, hint, instBox, panel);
  const message = h("div", { class: "nbf-message", testid: "message", role: "status", "aria-live": "polite", title: "click to dismiss", onclick: () => showMessage(null) });
  slotTop.append(message);
  const root = h("div", { class: "nbflow-widget" }, header, h("div", { class: "nbf-body" }, left, right));
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
    const terminal = TERMINAL_RUN.includes(status);
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
      act({ action: "cancel" }, slotHeader);
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
  /**
   * @param {Dag} dag
   * @returns {Layout}
   */
  function layoutFor(dag) {
    const key = JSON.stringify([dag.nodes.map((n) => [n.step, n.kind]), dag.edges]);
    if (key === ui.layoutKey && ui.layout) return ui.layout;
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
      svg.setAttribute("width", String(layout.width));
      svg.setAttribute("height", String(layout.height));
      // a wide graph widens its column (up to a share of the widget), and never shrinks below 70 %: the box scrolls
      root.style.setProperty("--nbf-dag-w", `${Math.ceil(layout.width) + 12}px`);
      svg.style.minWidth = `${Math.round(layout.width * 0.7)}px`;
    }
    for (const n of dag.nodes) {
      const g = ui.nodeEls.get(n.step);
      const pos = layout.nodes.get(n.step);
      if (!g || !pos) continue;
      drawNode(g, n, pos, n.step === selected);
    }
    legend.hidden = !dag.nodes.some((n) => n.breakpoints.length);
    renderBreakpoints();
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

  /** @param {Breakpoint} b */
  function bpSummary(b) {
    return `#${b.id} ${WHEN[b.when] || b.when}${b.key != null ? ` key ${b.key}` : ""}${b.condition ? ` if ${b.condition}` : ""}${b.state === "hit" ? ` — holding ${fmt(b.held)}` : ""}`;
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
    if (n.breakpoints.length) {
      // a hollow ring: set, waiting for an instance; a filled red dot: hit, holding instances
      const hit = n.breakpoints.some((b) => b.state === "hit");
      const tip = `${hit ? "breakpoint hit" : "breakpoint set (nothing held)"}: ${n.breakpoints.map(bpSummary).join("; ")}`;
      kids.push(s("g", { testid: "bp-marker", class: `nbf-bp-marker${hit ? " nbf-hit" : ""}`, "data-state": hit ? "hit" : "set", "data-count": n.breakpoints.length, transform: `translate(0,${hgt / 2})` },
        s("title", {}, tip),
        hit ? s("circle", { class: "nbf-bp-halo", r: 10 }) : null,
        s("circle", { class: "nbf-bp-core", r: hit ? 6.5 : 5.5 })));
    }
    g.replaceChildren(...kids);
  }

  // what the step reads from the notebook that is not stored with the run's code (a resume elsewhere needs the notebook)
  /** @param {DagNode} n */
  function usesText(n) {
    return n.uses && n.uses.length ? `uses from the notebook: ${n.uses.map((u) => u.text).join(", ")}` : "";
  }

  /**
   * @param {string} text
   * @param {number} max
   */
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
      h("li", { class: `nbf-bp-item${b.state === "hit" ? " nbf-hit" : ""}`, "data-bp-id": b.id, title: b.state === "hit" ? "hit: holding paused instances" : "set: nothing held yet" },
        h("span", { class: `nbf-dot${b.state === "hit" ? " nbf-hit" : ""}` }), h("b", {}, `#${b.id}`), ` ${WHEN[b.when] || b.when}`, b.key != null ? ` · key ${b.key}` : "", b.condition ? " · if " : "",
        b.condition ? h("code", {}, b.condition) : "", ` · ${b.scope === "run" ? "this run" : "every run"}`,
        b.state === "hit" ? h("span", { class: "nbf-hit-text" }, ` · holding ${fmt(b.held)}`) : "")) :
      [h("li", { class: "nbf-muted" }, "none")]));
    bpRemove.disabled = !node.breakpoints.length;
    bpAdd.disabled = TERMINAL_RUN.includes((model.get("summary") || {}).status);
  }

  // ---------------------------------------------------------------- instances
  /** @type {Map<string, RowEl>} */
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
    stepTitle.replaceChildren(h("b", {}, step), node ? h("span", { class: "nbf-muted" }, ` ${node.kind} · ${fmt(node.total)}`) : "",
      node && usesText(node) ? h("span", { class: "nbf-uses", testid: "step-uses", title: "not stored with the run's code: a resume in another process needs the notebook (nbflow resume RUN --notebook NB)" }, ` · ${usesText(node)}`) : "");
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
    const bps = breakpointsById();
    const rows = p.rows || [];
    /** @type {Map<string, RowEl>} */
    const next = new Map();
    const els = rows.map((r) => {
      const k = r.key == null ? "" : String(r.key);
      let tr = rowEls.get(k);
      if (!tr) {
        const box = h("input", { type: "checkbox", class: "nbf-check", testid: "select", onclick: (ev) => ev.stopPropagation(), onchange: () => {
          if (box.checked) ui.selectedKeys.add(row._key);
          else ui.selectedKeys.delete(row._key);
          updateSelectedCount();
        } });
        const row = /** @type {RowEl} */ (h("tr", { testid: "instance-row", "data-key": k, class: "nbf-inst-row", tabindex: 0 },
          h("td", { class: "nbf-c-check" }, box), h("td", { class: "nbf-c-key" }, h("span", { class: "nbf-key-text" })), h("td", { testid: "row-status" }), h("td", { class: "nbf-c-num" }), h("td", { class: "nbf-c-detail" })));
        row._box = box;
        row.addEventListener("click", () => send({ action: "select_instance", step: row._step, key: row._key }));
        row.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter") send({ action: "select_instance", step: row._step, key: row._key });
        });
        tr = row;
      }
      tr._key = r.key;
      tr._step = r.step;
      const [, keyTd, stTd, attTd, detTd] = /** @type {HTMLCollectionOf<HTMLTableCellElement>} */ (tr.children);
      /** @type {ChildNode} */ (keyTd.firstChild).textContent = r.key == null ? "—" : String(r.key);
      keyTd.title = r.key == null ? "the step's single instance" : String(r.key);
      stTd.textContent = r.status;
      stTd.className = `nbf-c-status nbf-fg-${r.status}`;
      stTd.setAttribute("data-status", r.status);
      attTd.textContent = r.attempt ? String(r.attempt) : "–";
      attTd.title = r.attempt ? plural(r.attempt, "attempt") : notStarted(r.status, node && node.kind);
      attTd.classList.toggle("nbf-muted", !r.attempt);
      detTd.textContent = rowDetail(r, bps);
      detTd.title = detTd.textContent;
      detTd.classList.toggle("nbf-fg-failed", r.status === "failed" || (r.status === "paused" && pauseWhen(r.pause_reason) === "error"));
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
    pageNext.disabled = offset + (p.limit || 20) >= total;
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
    const which = `${sel.step}\u0000${sel.key ?? ""}`;
    const fresh = ui.detailFor !== which;
    if (fresh) {
      // another instance: fold its traceback, show its newest history, clear the decision form
      ui.detailFor = which;
      ui.historyAll = false;
      tbFold.open = false;
      apComment.value = apPayload.value = apError.textContent = "";
    }
    panelTitle.textContent = label(sel.step, sel.key);
    for (const tr of rowEls.values()) tr.classList.toggle("nbf-current", sel.step === tr._step && (sel.key ?? null) === (tr._key ?? null));
    if (!d || d.missing) {
      panelStatus.textContent = d ? "not started" : "loading…";
      panelStatus.className = "nbf-pill nbf-st-pending";
      whyEl.textContent = d ? "Not started yet: it waits for its upstream steps." : "";
      for (const b of Object.values(verbButtons)) b.disabled = true;
      actionsRow.hidden = true;
      approvalBox.hidden = signalBox.hidden = true;
      inputsEl.textContent = outputEl.textContent = "";
      logsEl.textContent = "(nothing captured)";
      logsSummary.textContent = "Logs · none";
      errorSection.hidden = true;
      attemptsEl.replaceChildren(h("span", { class: "nbf-muted" }, "not started yet"));
      historyEl.replaceChildren();
      historyMore.hidden = true;
      return;
    }
    const bps = breakpointsById();
    const node = (model.get("dag").nodes || []).find((n) => n.step === sel.step);
    panelStatus.textContent = d.status + (d.status === "paused" && d.pause_reason ? ` · ${WHEN[pauseWhen(d.pause_reason)] || pauseWhen(d.pause_reason)}` : "");
    panelStatus.className = `nbf-pill nbf-st-${d.status}`;
    whyEl.textContent = whyText(d, bps);
    const verbs = new Set(d.verbs || []);
    // paused: every verb shows (the disabled ones say what a pause elsewhere would allow); otherwise only what applies
    for (const [verb, b] of Object.entries(verbButtons)) {
      b.disabled = !verbs.has(verb);
      b.hidden = d.status !== "paused" && !verbs.has(verb);
    }
    actionsRow.hidden = d.status !== "paused" && !Object.keys(verbButtons).some((v) => verbs.has(v));
    approvalBox.hidden = !verbs.has("approve");
    signalBox.hidden = !(d.status === "waiting" && d.token && d.pause_reason !== "approval");
    if (!signalBox.hidden) {
      tokenEl.value = /** @type {string} */ (d.token); // shown only with a token
      tokenHint.replaceChildren("Deliver the payload with ", h("code", {}, "nbflow signal TOKEN --payload JSON"), " or ", h("code", {}, "nbflow.signal(token, payload)"), ".");
    }
    inputsEl.textContent = Object.keys(d.inputs || {}).length ? pretty(d.inputs) : "(no inputs)";
    inputsEl.classList.toggle("nbf-empty-pre", !Object.keys(d.inputs || {}).length);
    if (d.readonly_inputs && d.readonly_inputs.length) inputsEl.title = `not editable here (not JSON, or too large): ${d.readonly_inputs.join(", ")}`;
    else inputsEl.removeAttribute("title");
    outputEl.textContent = d.has_output ? pretty(d.output) : "(no output yet)";
    outputEl.classList.toggle("nbf-empty-pre", !d.has_output);
    errorSection.hidden = !d.error;
    if (d.error) {
      errorLine.replaceChildren(h("b", {}, d.error.type), ": ", d.error.message);
      const tb = d.error.traceback || "";
      tbFold.hidden = !tb.trim();
      tbSummary.textContent = `Traceback · ${plural(tb.trimEnd().split("\n").length, "line")}`;
      tbPre.textContent = tb;
    }
    const logs = d.logs || "";
    const lines = logs ? logs.trimEnd().split("\n").length : 0;
    logsEl.textContent = logs ? (d.logs_truncated ? "…\n" : "") + logs : "(nothing captured)";
    logsEl.classList.toggle("nbf-empty-pre", !logs);
    logsSummary.textContent = lines ? `Logs · ${plural(lines, "line")}${d.logs_truncated ? " (the last)" : ""}` : "Logs · none";
    if (fresh) logsFold.open = lines > 0 && lines <= SHORT_LOGS;
    attemptsEl.replaceChildren(...(d.attempts && d.attempts.length ? d.attempts.map((a) =>
      h("div", { class: "nbf-attempt" }, h("b", {}, `#${a.attempt ?? "?"}`), h("span", { class: "nbf-muted" }, ` ${clock(a.started)} `),
        a.outcome ? h("span", { class: `nbf-fg-${a.outcome === "succeeded" ? "succeeded" : a.outcome === "retrying" || a.outcome === "attempt_failed" ? "paused" : "failed"}` }, a.outcome.replace("_", " ")) : h("span", { class: "nbf-fg-running" }, "running"),
        a.started && a.finished ? h("span", { class: "nbf-muted" }, ` · ${duration(a.started, a.finished)}`) : "",
        a.error ? h("div", { class: "nbf-attempt-error", title: a.error }, a.error) : "")) :
      [h("span", { class: "nbf-muted" }, d.attempt ? plural(d.attempt, "attempt") : notStarted(d.status, node && node.kind))]));
    const ctx = { bps, kind: node ? node.kind : "task" };
    const hist = (d.history || []).slice().reverse();
    const shown = ui.historyAll ? hist : hist.slice(0, HISTORY_SHOWN);
    historyEl.replaceChildren(...shown.map((e) => {
      const data = e.data || {};
      const reason = e.actor && e.kind !== "signal_refused" ? data.reason : null; // an operator's reason (a pause has its own "reason")
      const { head, tail, block } = describeEvent(e, ctx);
      return h("li", { "data-kind": e.kind, "data-event-id": e.id, class: `nbf-ev nbf-ev-${e.kind}` },
        h("span", { class: "nbf-h-time", title: e.ts || "" }, time(e.ts)),
        h("span", { class: "nbf-h-text" }, h("b", {}, head), e.actor ? h("span", { class: "nbf-muted" }, ` by ${e.actor}`) : "", tail || "",
          reason ? h("span", { class: "nbf-reason" }, ` — ${quote(reason)}`) : ""),
        block || "");
    }));
    const older = hist.length - shown.length + (d.history_omitted || 0);
    historyMore.hidden = hist.length <= HISTORY_SHOWN;
    historyMore.textContent = ui.historyAll ? "show the newest only" : `show ${plural(older, "older event")}`;
    if (ui.historyAll && d.history_omitted) historyEl.append(h("li", { class: "nbf-muted" }, `… ${plural(d.history_omitted, "older event")} not loaded (nbflow history)`));
  }

  // ---------------------------------------------------------------- JSON editor
  /** @param {"skip" | "set_inputs" | "set_output"} mode */
  function openEditor(mode) {
    const sel = model.get("selected");
    const d = model.get("detail");
    if (!sel || !d) return;
    let initial;
    if (mode === "set_inputs") {
      /** @type {Record<string, unknown>} */
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
      const msg = e instanceof SyntaxError ? `Invalid JSON: ${e.message}` : /** @type {Error} */ (e).message;
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
    ui.editor.req = act({ action: mode, step, key, json: edText.value, reason: edReason.value.trim() || null }, slotPanel);
    edSave.disabled = true;
  }

  function closeEditor() {
    ui.editor = null;
    editor.hidden = true;
    edError.textContent = "";
    edText.classList.remove("nbf-invalid");
  }

  // ---------------------------------------------------------------- messages
  // One message element ([data-testid=message]); it moves next to the control that asked.
  /** @param {HTMLElement | null} [slot] */
  function placeMessage(slot) {
    ui.msgSlot = slot || slotTop;
    if (message.parentNode !== ui.msgSlot) ui.msgSlot.append(message);
  }

  /** @param {Message | null} m */
  function showMessage(m) {
    // a slot that is no longer shown (a closed panel, another step): fall back to the top of the right column
    if (message.parentNode !== slotTop && /** @type {Element} */ (message.parentNode).closest("[hidden]")) placeMessage(slotTop);
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
    renderDetail();
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
