// The selected step's time: median, p95 and longest attempt, counts of retries, pauses and waits,
// and a strip of (at most 48) bins of what happened when, as stacked SVG bars. Computed in Python
// (nbflow.views.timeline) from the store, so a 10,000-item step costs the same as a small one.
import { h, s } from "./dom.js";
import { clock, fmt, plural, secs } from "./format.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").TimelineBin} TimelineBin */

/** @type {[keyof TimelineBin, string][]} the stacked parts of a bin, bottom up, with their colour's status */
const PARTS = [["succeeded", "succeeded"], ["failed", "failed"], ["retried", "running"], ["paused", "paused"], ["waiting", "waiting"]];
const W = 480;
const H = 34;

/** @param {Ctx} ctx */
export function createTimeline(ctx) {
  const { model } = ctx;
  const stats = h("div", { class: "nbf-tl-stats", testid: "timeline-stats" });
  const svg = s("svg", { class: "nbf-tl-svg", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  const axis = h("div", { class: "nbf-tl-axis nbf-muted" });
  const el = h("details", { class: "nbf-section nbf-fold nbf-timeline", testid: "timeline", open: true },
    h("summary", { class: "nbf-section-title" }, "Timeline"), stats, svg, axis);
  let sig = "";

  function render() {
    const t = model.get("timeline");
    el.hidden = !t || !t.count;
    if (!t || !t.count) return;
    const now = JSON.stringify(t);
    if (now === sig) return;
    sig = now;
    const part = (/** @type {string} */ label, /** @type {number | null} */ v) => (v == null ? "" : `${label} ${secs(v)}`);
    stats.textContent = [plural(t.count, "attempt"), part("median", t.median_s), part("p95", t.p95_s), part("max", t.max_s),
      `${fmt(t.retries)} ${t.retries === 1 ? "retry" : "retries"}`, plural(t.pauses, "pause"), plural(t.waits, "wait")].filter(Boolean).join(" · ");
    const bins = t.bins || [];
    const top = Math.max(1, ...bins.map((b) => PARTS.reduce((n, [k]) => n + Number(b[k] || 0), 0)));
    const bw = W / Math.max(bins.length, 1);
    svg.replaceChildren(...bins.map((b, i) => {
      let y = H;
      const tip = [clock(b.t), ...PARTS.filter(([k]) => b[k]).map(([k]) => `${fmt(Number(b[k]))} ${k}`), b.started ? `${fmt(b.started)} started` : ""].filter(Boolean).join(" · ");
      return s("g", { "data-t": b.t }, s("title", {}, tip), s("rect", { class: "nbf-tl-hit", x: i * bw, y: 0, width: bw, height: H }),
        ...PARTS.filter(([k]) => b[k]).map(([k, st]) => {
          const hgt = (Number(b[k]) / top) * (H - 2);
          y -= hgt;
          return s("rect", { class: `nbf-fill-${st}`, x: i * bw + 0.5, y, width: Math.max(bw - 1, 0.5), height: hgt });
        }));
    }));
    axis.replaceChildren(h("span", {}, clock(t.start)), h("span", { class: "nbf-spacer" }), h("span", {}, clock(t.end)));
  }

  return { el, render };
}
