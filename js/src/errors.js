// The Errors view of the selected step: its failed and error-paused instances grouped by signature
// (exception type, message with numbers and quoted values masked, failing line), largest first.
// Each group is one button ("ValueError × 12: could not convert …") that selects the group for the
// bulk verbs; under it, the failing line, the first example's traceback, and the group's keys.
import { h } from "./dom.js";
import { fmt, plural } from "./format.js";
import { filterArgs } from "./table.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").ErrorGroup} ErrorGroup */

/** The masked message of a group: its signature without the type and the failing line.
 * @param {ErrorGroup} g */
export function maskedMessage(g) {
  let m = g.signature || g.message || "";
  if (m.startsWith(`${g.type}: `)) m = m.slice(g.type.length + 2);
  if (g.line && m.endsWith(` @ ${g.line}`)) m = m.slice(0, m.length - g.line.length - 3);
  return m;
}

/** @param {Ctx} ctx */
export function createErrors(ctx) {
  const { model } = ctx;
  const title = h("div", { class: "nbf-section-title nbf-errors-title" });
  const close = h("button", { class: "nbf-btn nbf-small nbf-ghost", "aria-label": "close the Errors view", title: "close", onclick: () => ctx.send("show_errors", { on: false }) }, "✕");
  const list = h("div", { class: "nbf-egroups", role: "list" });
  const more = h("div", { class: "nbf-muted" });
  const el = h("section", { class: "nbf-errors", testid: "errors-view", "aria-label": "Errors", hidden: true },
    h("div", { class: "nbf-row nbf-errors-head" }, title, h("span", { class: "nbf-spacer" }), close), list, more);
  /** @type {Set<string>} tracebacks unfolded (kept across renders) */
  const openTb = new Set();
  let sig = "";

  function render() {
    const errs = model.get("errors");
    el.hidden = !errs;
    if (!errs) {
      sig = "";
      return;
    }
    const sel = model.get("selection") || { kind: "none", count: 0 };
    const s = JSON.stringify([errs, sel.kind, sel.group]);
    if (s === sig) return; // unchanged: keep the folds and the focus
    sig = s;
    const groups = errs.groups || [];
    title.replaceChildren("Errors in ", h("b", {}, errs.step), ` · ${plural(errs.total, "instance")} in ${plural(groups.length + (errs.groups_omitted || 0), "group")}`);
    list.replaceChildren(...(groups.length ? groups.map((g) => group(g, sel.kind === "group" && sel.group === g.id)) : [h("div", { class: "nbf-muted" }, "Nothing failed in this step.")]));
    more.textContent = errs.groups_omitted ? `… and ${plural(errs.groups_omitted, "smaller group")} (nbflow errors RUN ${errs.step})` : "";
  }

  /** A group's click: its instances become the selection, and the table shows them.
   * @param {ErrorGroup} g */
  async function choose(g) {
    const a = await ctx.send("select", { group: g.id });
    const p = model.get("instances") || {};
    if (a.ok) await ctx.send("filter", filterArgs(p, { group: g.id }));
  }

  /**
   * @param {ErrorGroup} g
   * @param {boolean} chosen
   */
  function group(g, chosen) {
    const masked = maskedMessage(g);
    const btn = h("button", { class: `nbf-egroup-btn${chosen ? " nbf-on" : ""}`, testid: "error-group", "data-group-id": g.id, "aria-pressed": chosen ? "true" : "false",
      title: `select the ${plural(g.count, "instance")} of this group for the bulk verbs`, onclick: () => choose(g) },
      h("b", { class: "nbf-fg-failed" }, g.type), ` × ${fmt(g.count)}: `, h("span", { class: "nbf-egroup-msg" }, masked));
    const st = Object.entries(g.statuses || {}).filter(([, n]) => n > 0).map(([k, n]) => `${fmt(n)} ${k === "paused" ? "paused on the error" : k}`).join(" · ");
    const tb = h("details", { class: "nbf-fold", testid: "group-traceback" }, h("summary", {}, `Traceback of the first example${g.first_key != null ? ` (${g.first_key})` : ""}`),
      h("pre", { class: "nbf-pre nbf-traceback" }, g.traceback || "(none recorded)"));
    tb.open = openTb.has(g.id);
    tb.addEventListener("toggle", () => (tb.open ? openTb.add(g.id) : openTb.delete(g.id)));
    const keys = h("div", { class: "nbf-egroup-keys", testid: "group-keys" }, h("span", { class: "nbf-muted" }, "keys "),
      ...(g.keys || []).map((k) => h("button", { class: "nbf-key-chip", title: `open ${k}`, onclick: () => ctx.send("select_instance", { step: model.get("selected_step"), key: k }) }, String(k))),
      g.keys_omitted ? h("span", { class: "nbf-muted" }, ` and ${fmt(g.keys_omitted)} more`) : "");
    return h("div", { class: `nbf-egroup${chosen ? " nbf-on" : ""}`, role: "listitem" },
      btn,
      h("div", { class: "nbf-egroup-meta" }, st ? h("span", { class: "nbf-muted" }, st) : "", g.line ? h("code", { class: "nbf-egroup-line", title: "the failing line" }, g.line) : ""),
      tb, keys);
  }

  return { el, render };
}
