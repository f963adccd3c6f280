// The breakpoints of the selected step: the list (with each one's state in this run), and the form
// that adds one (for every run of the workflow) or removes them.
import { h } from "./dom.js";
import { TERMINAL_RUN, fmt, plural } from "./format.js";
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
  const slot = h("div", { class: "nbf-msg-slot" });
  const bpAdd = h("button", { class: "nbf-btn", testid: "add-breakpoint", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    ctx.act("add_breakpoint", { step, key: bpKey.value.trim() || null, when: bpWhen.value, condition: bpCond.value.trim() || null }, slot);
  } }, "Add breakpoint");
  const bpRemove = h("button", { class: "nbf-btn", testid: "remove-breakpoint", title: "remove the breakpoints on this step (or on the key given)", onclick: () => {
    const step = model.get("selected_step");
    if (!step) return;
    ctx.act("remove_breakpoint", { step, key: bpKey.value.trim() || null }, slot);
  } }, "Remove");
  for (const elem of [bpCond, bpKey]) ctx.stop(elem);
  const el = h("div", { class: "nbf-bp", hidden: true }, bpTitle, bpList,
    h("div", { class: "nbf-row" }, bpWhen, bpKey, bpCond),
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
    const items = node.breakpoints.map((b) =>
      h("li", { class: `nbf-bp-item${b.state === "hit" ? " nbf-hit" : ""}`, "data-bp-id": b.id, title: b.state === "hit" ? "hit: holding paused instances" : "set: nothing held yet" },
        h("span", { class: `nbf-dot${b.state === "hit" ? " nbf-hit" : ""}` }), h("b", {}, `#${b.id}`), ` ${WHEN[b.when] || b.when}`, b.key != null ? ` · key ${b.key}` : "", b.condition ? " · if " : "",
        b.condition ? h("code", {}, b.condition) : "", ` · ${b.scope === "run" ? "this run" : "every run"}`,
        b.state === "hit" ? h("span", { class: "nbf-hit-text" }, ` · holding ${fmt(b.held)}`) : ""));
    if (boeItem) items.unshift(boeItem);
    bpList.replaceChildren(...(items.length ? items : [h("li", { class: "nbf-muted" }, "none")]));
    bpRemove.disabled = !node.breakpoints.length;
    bpAdd.disabled = TERMINAL_RUN.includes((model.get("summary") || {}).status);
  }

  return { el, render };
}
