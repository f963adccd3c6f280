// The breakpoints of the selected step: the list (with each one's state in this run), and the form
// that adds one (for every run of the workflow) or removes them.
import { h } from "./dom.js";
import { TERMINAL_RUN, fmt, label, plural } from "./format.js";
import { WHEN } from "./describe.js";

/** @typedef {import("./types.js").Ctx} Ctx */

/** @param {Ctx} ctx */
export function createBreakpoints(ctx) {
  const { model } = ctx;
  const bpTitle = h("div", { class: "nbf-section-title" });
  const bpList = h("ul", { class: "nbf-bp-list", testid: "bp-list" });
  const bpKey = h("input", { class: "nbf-input nbf-bp-key", testid: "bp-key", placeholder: "all keys", title: "only this key (empty: every instance of the step)", size: 7 });
  const bpWhen = h("select", { class: "nbf-input", testid: "bp-when", title: "pause before its body, after it (to edit the output), or on an error" }, ["before", "after", "error"].map((w) => h("option", { value: w }, w === "error" ? "on error" : w)));
  const bpCond = h("input", { class: "nbf-input nbf-grow", testid: "bp-condition", placeholder: "if … (optional)", title: "a Python condition on the inputs, e.g. item['x'] > 3 (empty: always)" });
  const bpLog = h("input", { class: "nbf-input nbf-grow nbf-mono", testid: "bp-log", placeholder: "log … (optional)", "aria-label": "Log expression",
    title: "a logpoint: record this expression's value for each instance that reaches it, and never pause, e.g. item['x']" });
  const bpHits = h("input", { class: "nbf-input nbf-bp-key", testid: "bp-hit-count", type: "number", min: 1, placeholder: "from hit", "aria-label": "From hit",
    title: "act from the Nth instance that reaches it (and matches) on: the first N-1 pass (empty: the first)", size: 7 });
  const slot = h("div", { class: "nbf-msg-slot" });
  const bpAdd = h("button", { class: "nbf-btn", testid: "add-breakpoint", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    const hits = bpHits.value.trim();
    ctx.act("add_breakpoint", { step, key: bpKey.value.trim() || null, when: bpWhen.value, condition: bpCond.value.trim() || null,
      expression: bpLog.value.trim() || null, hit_count: hits ? Number(hits) : null }, slot);
  } }, "Add breakpoint");
  const bpRemove = h("button", { class: "nbf-btn", testid: "remove-breakpoint", title: "remove the breakpoints on this step (or on the key given)", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    ctx.act("remove_breakpoint", { step, key: bpKey.value.trim() || null }, slot);
  } }, "Remove");
  for (const elem of [bpCond, bpKey, bpLog, bpHits]) ctx.stop(elem);
  const el = h("div", { class: "nbf-bp", hidden: true }, bpTitle, bpList,
    h("div", { class: "nbf-row" }, bpWhen, bpKey, bpCond),
    h("div", { class: "nbf-row" }, bpLog, bpHits),
    h("div", { class: "nbf-row" }, bpAdd, bpRemove), slot);

  function render() {
    const step = model.get("selected_step");
    const node = (model.get("dag").nodes || []).find((n) => n.step === step);
    el.hidden = !node;
    if (!node) return;
    bpTitle.replaceChildren("Breakpoints on ", h("b", {}, step));
    // the run's break-on-error flag is a breakpoint too: on every step, holding what failed
    const boe = (model.get("summary") || {}).break_on_error || { enabled: false };
    const boeHeld = boe.held || 0;
    const boeItem = boe.enabled ? h("li", { class: `nbf-bp-item${boeHeld ? " nbf-hit" : ""}`, testid: "bp-break-on-error", title: "the run's break_on_error: an instance that raises pauses instead of failing" },
      h("span", { class: `nbf-dot${boeHeld ? " nbf-hit" : ""}` }), h("b", {}, "break on error"), " · this run",
      boeHeld ? h("span", { class: "nbf-hit-text" }, ` · holding ${plural(boeHeld, "instance")}`) : "") : null;
    const items = node.breakpoints.map((b) => {
      const hit = b.state === "hit";
      const label = b.label ? b.label.replace(/\s*\(one-shot\)$/, "") : composed(b);
      return h("li", { class: `nbf-bp-item${hit ? " nbf-hit" : ""}${b.one_shot ? " nbf-one-shot" : ""}`, "data-bp-id": b.id, testid: "bp-item",
        "data-action": b.action || "pause", title: b.origin ? `made by ${b.origin}: removed once it fired` : hit ? "hit: holding paused instances" : "set: nothing held yet" },
      h("span", { class: `nbf-dot${hit ? " nbf-hit" : ""}${b.action === "log" ? " nbf-log" : ""}` }), h("b", {}, `#${b.id}`), " ", h("span", { class: "nbf-bp-label", testid: "bp-label" }, label),
      ` · ${b.scope === "run" ? "this run" : "every run"}`,
      b.one_shot ? h("span", { class: "nbf-tag nbf-tag-one-shot", testid: "one-shot", title: "a step over's breakpoint: it pauses the consumers once, then it is removed" }, "one-shot") : "",
      b.action === "log" && logged(b) ? h("span", { class: "nbf-muted" }, ` · logged ${plural(logged(b), "time")}`) : "",
      hit ? h("span", { class: "nbf-hit-text" }, ` · holding ${fmt(b.held)}`) : "");
    });
    // a fired step over holds its consumers (held_by -1) as break on error holds what failed
    const held = steppedOver(String(step));
    if (held) items.unshift(h("li", { class: "nbf-bp-item nbf-hit", testid: "bp-stepped-over", title: "a fired step over: its consumers wait, paused before their body; resume each when ready" },
      h("span", { class: "nbf-dot nbf-hit" }), h("b", {}, "step over"), " · this run", h("span", { class: "nbf-hit-text" }, ` · holding ${held}`)));
    if (boeItem) items.unshift(boeItem);
    bpList.replaceChildren(...(items.length ? items : [h("li", { class: "nbf-muted" }, "none")]));
    const past = ctx.past(); // the past is read-only
    bpRemove.disabled = past || !node.breakpoints.length;
    bpAdd.disabled = past || TERMINAL_RUN.includes((model.get("summary") || {}).status);
  }

  /**
   * What fired step overs hold (held_by -1): the instances of this step when the view lists them
   * (summary.stepped_over.instances), else, like break on error's, the run's count.
   * @param {string} step
   * @returns {string}  "" when nothing is held
   */
  function steppedOver(step) {
    const so = (model.get("summary") || {}).stepped_over;
    if (!so) return "";
    if (so.instances) {
      const mine = so.instances.filter((i) => i.step === step).map((i) => label(i.step, i.key));
      return mine.length > 3 ? plural(mine.length, "instance") : mine.join(", ");
    }
    return so.held ? plural(so.held, "instance") : "";
  }

  return { el, render };
}

/** How many values a logpoint recorded: its hits but the first hit_count - 1, which passed.
 * @param {import("./types.js").Breakpoint} b
 */
function logged(b) {
  return Math.max((b.hits || 0) - Math.max((b.hit_count || 1) - 1, 0), 0);
}

/** A breakpoint in words when the view sends no label (an older controller).
 * @param {import("./types.js").Breakpoint} b
 */
function composed(b) {
  const when = WHEN[b.when] || b.when;
  const head = b.action === "log" ? `log ${b.expression || ""} · ${when}` : when;
  return `${head}${b.key != null ? ` · key ${b.key}` : ""}${b.condition ? ` · if ${b.condition}` : ""}${b.hit_count && b.hit_count > 1 ? ` · hit ${b.hits || 0} of >= ${b.hit_count}` : ""}`;
}
