// Words for pauses, breakpoints, rows, instances and history events.
import { h } from "./dom.js";
import { clock, compact, cut, duration, errText, isObj, plural, quote, secs } from "./format.js";

/** The id in `held_by` that stands for the run's break_on_error flag (nbflow.states.BREAK_ON_ERROR). */
export const BREAK_ON_ERROR = 0;
/** The id in `held_by` that stands for a fired step over (nbflow.states.STEPPED_OVER). */
export const STEPPED_OVER = -1;

/** @typedef {import("./types.js").Breakpoint} Breakpoint */
/** @typedef {import("./types.js").InstanceRow} InstanceRow */
/** @typedef {import("./types.js").Detail} Detail */
/** @typedef {import("./types.js").HistoryEvent} HistoryEvent */
/** @typedef {import("./types.js").EventData} EventData */
/** @typedef {import("./types.js").Pause} Pause */

/** @type {Record<string, string>} */
export const WHEN = { before: "before", after: "after", error: "on error" };
/** @type {Record<string, string>} */
export const WHEN_LONG = { before: "before its body", after: "after its body", error: "on an error" };

/** What holds a paused or waiting instance: before, after, error, approval or signal (its `pause.when`).
 * @param {Pause | null | undefined} pause
 */
export const pauseWhen = (pause) => (pause ? pause.when : "");
/** @param {Pause | null | undefined} pause */
export const pauseExtra = (pause) => (pause && pause.detail) || "";
/** A stored pause reason text as a Pause, as nbflow.states.PauseReason.parse reads it: for history
 * events, which carry the text (instance rows carry `pause` already).
 * @param {string | null | undefined} text
 * @returns {Pause | null}
 */
export const parsePause = (text) => {
  const t = String(text || "");
  if (!t) return null;
  const at = t.indexOf(": ");
  return at >= 0 ? { when: t.slice(0, at), detail: t.slice(at + 2) } : { when: t, detail: null };
};

/** One breakpoint id as words: 0 is the run's break_on_error flag.
 * @param {number} id
 * @param {Map<number, Breakpoint>} bps
 */
export function bpText(id, bps) {
  if (id === BREAK_ON_ERROR) return "break on error";
  if (id === STEPPED_OVER) return "step over";
  const b = bps.get(id);
  if (!b) return `breakpoint #${id}`;
  if (b.label) return `breakpoint #${id} (${b.label})`;
  return `breakpoint #${id}${b.key != null ? ` (key ${b.key})` : ""}${b.condition ? ` if ${b.condition}` : ""}`;
}

/**
 * @param {number[] | undefined} ids
 * @param {Map<number, Breakpoint>} bps
 */
export const heldText = (ids, bps) => (ids || []).map((id) => bpText(id, bps)).join(", ");

/** Why an instance has made no attempt.
 * @param {string} status
 * @param {string | undefined} kind
 */
export function notStarted(status, kind) {
  if (kind === "approval" || kind === "wait") return "none: it runs no code";
  return ["pending", "ready", "paused", "waiting"].includes(status) ? "not started yet" : "none";
}

/** How long an instance's last attempt took, from one source so the row, the panel and its list
 * of attempts agree: `duration_s` (the instance's own times), else its attempts' events.
 * @param {InstanceRow | Detail} r
 */
export function tookText(r) {
  if (r.duration_s != null) return secs(r.duration_s);
  const attempts = "attempts" in r ? r.attempts || [] : [];
  const last = attempts[attempts.length - 1];
  if (last && last.started && last.finished) return duration(last.started, last.finished);
  return duration(r.started_at, r.finished_at);
}

/** What the table's detail column says about a row: what the status does not already say.
 * @param {InstanceRow} r
 * @param {Map<number, Breakpoint>} bps
 */
export function rowDetail(r, bps) {
  const err = errText(r.error);
  switch (r.status) {
    case "paused": {
      const when = pauseWhen(r.pause);
      const held = r.held_by || [];
      // "break on error" already says when
      const parts = when === "error" && held.length === 1 && held[0] === BREAK_ON_ERROR ? [] : [WHEN[when] || when];
      const extra = pauseExtra(r.pause);
      // a step over's pause reason says it already ("before: step over enrich:3")
      const byStepOver = held.length === 1 && held[0] === STEPPED_OVER && extra.startsWith("step over");
      if (held.length && !byStepOver) parts.push(heldText(held, bps));
      if (extra) parts.push(extra);
      if (when === "error" && err) parts.push(err);
      return parts.join(" · ");
    }
    case "waiting": {
      const what = pauseWhen(r.pause) === "approval" ? "needs a decision" : `signal ${quote(pauseExtra(r.pause))}`;
      return what + (r.deadline ? ` · until ${clock(r.deadline)}` : "");
    }
    case "retrying":
      return (r.next_attempt_at ? `next attempt at ${clock(r.next_attempt_at)}` : "waiting to retry") + (err ? ` · ${err}` : "");
    case "failed":
      return err;
    case "running":
      return r.started_at ? `since ${clock(r.started_at)}` : "";
    case "succeeded": {
      const took = tookText(r);
      return took ? `took ${took}` : "";
    }
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
export function whyText(d, bps) {
  const err = errText(d.error);
  switch (d.status) {
    case "paused": {
      const when = pauseWhen(d.pause);
      const extra = pauseExtra(d.pause);
      const byStepOver = !!d.held_by && d.held_by.length === 1 && d.held_by[0] === STEPPED_OVER && extra.startsWith("step over");
      const by = d.held_by && d.held_by.length && !byStepOver ? ` — ${heldText(d.held_by, bps)}` : "";
      const hint = when === "after" ? " Its output can be edited before it goes on." : when === "error" ? " Resume lets the error go on; or edit the inputs and retry, or skip." : "";
      return `Paused ${WHEN_LONG[when] || when}${by}${extra ? ` (${extra})` : ""}.${hint}`;
    }
    case "waiting":
      if (pauseWhen(d.pause) === "approval") return `Waiting for a decision${d.deadline ? ` until ${clock(d.deadline)}` : ""}: approve or reject it below.`;
      return `Waiting for signal ${quote(pauseExtra(d.pause))}${d.deadline ? ` until ${clock(d.deadline)}` : ""}: deliver it with the token below.`;
    case "retrying":
      return `Attempt ${d.attempt} failed${err ? ` (${cut(err, 120)})` : ""}; ${d.next_attempt_at ? `next attempt at ${clock(d.next_attempt_at)}` : "it will be tried again"}.`;
    case "failed":
      return d.attempt ? `Failed after ${plural(d.attempt, "attempt")}.` : "Failed before it could start.";
    case "running":
      return `Running attempt ${d.attempt || 1}${d.started_at ? ` since ${clock(d.started_at)}` : ""}.`;
    case "succeeded": {
      const took = tookText(d);
      return `Succeeded${d.attempt ? ` on attempt ${d.attempt}` : ""}${took ? ` in ${took}` : ""}.`;
    }
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
export function changes(a, b, max = 6) {
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
export function diffBlock(oldV, newV) {
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

/** A unified diff as a block: added lines, removed lines and hunk headers coloured.
 * @param {string} text
 */
export function unifiedDiff(text) {
  const lines = String(text || "").replace(/\n$/, "").split("\n");
  return h("pre", { class: "nbf-pre nbf-udiff", testid: "code-diff" }, lines.map((line) => {
    const cls = line.startsWith("+++") || line.startsWith("---") ? "nbf-ud-file"
      : line.startsWith("@@") ? "nbf-ud-hunk" : line.startsWith("+") ? "nbf-ud-add" : line.startsWith("-") ? "nbf-ud-del" : "nbf-ud-ctx";
    return h("span", { class: `nbf-ud-line ${cls}` }, `${line}\n`);
  }));
}

/**
 * @param {string} name
 * @param {unknown} v
 */
export const valueBlock = (name, v) => h("div", { class: "nbf-diff", title: compact(v, 2000) }, h("span", { class: "nbf-diff-label" }, name), h("code", { class: "nbf-diff-new" }, compact(v, 160)));

/** A history event as a sentence: {head, tail, block}; the actor goes between head and tail.
 * @param {HistoryEvent} e
 * @param {{bps: Map<number, Breakpoint>, kind: string}} ctx
 * @returns {{head: string, tail?: string, block?: HTMLElement | null}} */
export function describeEvent(e, ctx) {
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
      const extra = pauseExtra(parsePause(d.reason));
      const byStepOver = ids.length === 1 && ids[0] === STEPPED_OVER && extra.startsWith("step over"); // the reason says it
      return { head: `paused ${WHEN[String(d.when)] || d.when || ""}${ids.length && !byStepOver ? ` · ${heldText(ids, ctx.bps)}` : ""}${extra ? ` · ${extra}` : ""}` };
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
    case "logpoint":
      return { head: `logged ${d.expression ?? "?"}${d.when && d.when !== "before" ? ` (${WHEN[String(d.when)] || d.when})` : ""}`,
        tail: d.error ? ` — ${cut(String(d.error), 200)}` : "", block: d.error ? null : valueBlock("value", d.value) };
    case "code_changed":
      return { head: "code changed", tail: d.steps ? `: ${d.steps.join(", ")}` : "", block: d.diff ? unifiedDiff(d.diff) : null };
    case "breakpoint_fired":
      return { head: `${d.origin || "breakpoint"} fired` };
    case "command":
      return { head: `command ${d.verb}`, tail: `: ${d.result === "refused" ? "refused — " : ""}${cut(d.message, 200)}` };
    default: {
      const rest = Object.entries(d).filter(([k]) => !(e.actor && k === "reason"))
        .map(([k, v]) => `${k}: ${typeof v === "string" ? cut(v, 80) : compact(v, 80)}`).join(" · ");
      return { head: String(e.kind).replaceAll("_", " "), tail: rest ? ` — ${rest}` : "" };
    }
  }
}
