// The history scrubber: a range over the run's events (1..N) with its marks (run-level events,
// pauses, failures), a step back and forward, and "Live". At an event the controller computes the
// run as it was right after it (nbflow.views.run_state_at): the header's counts, the DAG and the
// table show that moment, a banner says which event, and the verbs are off (the past is read-only)
// until "Live" returns to now. Every move is one `travel {event}` action (null: live).
import { h } from "./dom.js";
import { clock, fmt, label } from "./format.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").History} History */
/** @typedef {import("./types.js").Mark} Mark */

const PAUSES = ["paused", "breakpoint_fired", "waiting", "stepped_over"];
const FAILURES = ["failed", "attempt_failed", "timed_out", "deadline_exceeded", "rejected"];

/**
 * What a mark stands for: "run" (a run-level event), "pause", "fail" or "other".
 * @param {string} kind
 */
export function markClass(kind) {
  if (kind.startsWith("run_")) return "run";
  if (PAUSES.includes(kind)) return "pause";
  if (FAILURES.includes(kind)) return "fail";
  return "other";
}

/**
 * "paused enrich:3, 20:22:24": an event as the banner and the marks' tips say it.
 * @param {{kind: string, step: string | null, key: import("./types.js").Key, ts: import("./types.js").When}} e
 */
export function eventText(e) {
  const where = e.step ? ` ${label(e.step, e.key)}` : "";
  const at = clock(e.ts);
  return `${e.kind}${where}${at ? `, ${at}` : ""}`;
}

/** @param {Ctx} ctx */
export function createHistory(ctx) {
  const { model } = ctx;
  /** @param {number | null} event */
  const go = (event) => ctx.send("travel", { event });
  const back = h("button", { class: "nbf-btn nbf-small", testid: "history-back", title: "one event back", "aria-label": "one event back", onclick: () => {
    const hs = history();
    void go(hs.at ? Math.max(hs.at.n - 1, 1) : Math.max(hs.total, 1));
  } }, "◀");
  const forward = h("button", { class: "nbf-btn nbf-small", testid: "history-forward", title: "one event forward", "aria-label": "one event forward", onclick: () => {
    const hs = history();
    if (hs.at) void go(hs.at.n + 1 > hs.total ? null : hs.at.n + 1);
  } }, "▶");
  const live = h("button", { class: "nbf-btn nbf-small", testid: "history-live", title: "back to the run as it is now", onclick: () => void go(null) }, "Live");
  const range = h("input", { type: "range", class: "nbf-history-range", testid: "history-range", min: 1, max: 1, step: 1, "aria-label": "event" });
  const marks = h("div", { class: "nbf-history-marks", testid: "history-marks" });
  const position = h("span", { class: "nbf-history-pos nbf-muted", testid: "history-position" });
  const banner = h("div", { class: "nbf-history-banner", testid: "history-banner", role: "status", hidden: true });
  const el = h("div", { class: "nbf-history", testid: "history-bar", role: "group", "aria-label": "History" },
    h("div", { class: "nbf-history-row" }, h("span", { class: "nbf-history-title" }, "History"), back,
      h("div", { class: "nbf-history-track" }, marks, range), forward, live, position),
    banner);

  /** @returns {History} */
  const history = () => model.get("history") || { total: 0, marks: [], at: null };
  /** @param {number} n */
  const pct = (n) => {
    const total = history().total;
    return total > 1 ? (100 * (n - 1)) / (total - 1) : 0;
  };
  // dragging shows where it would go; letting go (or a key) travels there
  range.addEventListener("input", () => {
    const n = Number(range.value);
    const mark = history().marks.find((m) => m.n === n);
    position.textContent = `event ${fmt(n)} of ${fmt(history().total)}${mark ? ` · ${eventText(mark)}` : ""}`;
  });
  range.addEventListener("change", () => void go(Number(range.value)));
  ctx.stop(range);

  let marksSig = "";
  function render() {
    const hs = history();
    const at = hs.at;
    el.hidden = !hs.total;
    range.max = String(Math.max(hs.total, 1));
    if (document.activeElement !== range) range.value = String(at ? at.n : hs.total);
    range.disabled = hs.total < 2;
    back.disabled = hs.total < 1 || (!!at && at.n <= 1);
    forward.disabled = !at;
    live.disabled = !at;
    live.classList.toggle("nbf-on", !at);
    position.textContent = at ? `event ${fmt(at.n)} of ${fmt(hs.total)}` : `live · ${fmt(hs.total)} events`;
    const sig = JSON.stringify([hs.total, hs.marks.map((m) => m.n)]);
    if (sig !== marksSig) {
      marksSig = sig;
      marks.replaceChildren(...hs.marks.map((m) => h("button", {
        class: `nbf-history-mark nbf-mark-${markClass(m.kind)}`, testid: "history-mark", "data-kind": m.kind, "data-n": m.n,
        style: `left:${pct(m.n)}%`, title: `event ${fmt(m.n)}: ${eventText(m)}`, "aria-label": `event ${m.n}: ${eventText(m)}`,
        onclick: () => void go(m.n),
      })));
    }
    for (const b of marks.children) b.classList.toggle("nbf-here", !!at && Number(b.getAttribute("data-n")) === at.n);
    banner.hidden = !at;
    banner.replaceChildren(...(at ? [
      h("b", {}, `Viewing event ${fmt(at.n)} of ${fmt(hs.total)}`), ` (${eventText(at)})`,
      h("span", { class: "nbf-muted" }, " · the run as it was right after it; read-only"),
      h("button", { class: "nbf-btn nbf-small", testid: "history-banner-live", onclick: () => void go(null) }, "Back to live"),
    ] : []));
    ctx.root.classList.toggle("nbf-at", !!at);
    if (at) ctx.root.setAttribute("data-at", String(at.n));
    else ctx.root.removeAttribute("data-at");
  }

  return { el, render };
}
