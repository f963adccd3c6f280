// A fork against its parent: the "vs parent" panel (the `diff` action opens and closes it). It lists
// the items whose output differs (nbflow.Run.diff of the parent with this run: before is the
// parent's, after this run's), those only one of them has, and the two runs' parameters and code
// versions side by side, with what differs marked.
import { h } from "./dom.js";
import { compact, fmt, label } from "./format.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").Diff} Diff */
/** @typedef {import("./types.js").DiffEntry} DiffEntry */

const SECTIONS = /** @type {const} */ ([
  ["changed", "Changed", "the output differs"],
  ["added", "Only in this run", "the parent has no output for it"],
  ["removed", "Only in the parent", "this run has no output for it"],
]);

/** @param {string | number | null} v  a code version as the header shows it (its first 12 characters) */
const shortVersion = (v) => (v == null ? "—" : String(v).slice(0, 12));

/** @param {Ctx} ctx */
export function createCompare(ctx) {
  const { model } = ctx;
  const title = h("div", { class: "nbf-compare-title" });
  const close = h("button", { class: "nbf-btn nbf-small nbf-ghost", testid: "diff-close", title: "close the comparison", onclick: () => ctx.send("diff", { on: false }) }, "✕");
  const runs = h("table", { class: "nbf-table nbf-compare-runs", testid: "diff-runs" });
  const body = h("div", { class: "nbf-compare-body" });
  const el = h("section", { class: "nbf-compare", testid: "diff-panel", hidden: true, "aria-label": "vs parent" },
    h("div", { class: "nbf-row nbf-compare-head" }, title, close), runs, body);

  function render() {
    /** @type {Diff | null | undefined} */
    const d = model.get("diff");
    el.hidden = !d;
    if (!d) return;
    const fork = d.fork;
    title.replaceChildren(h("b", {}, "vs parent "), h("code", { testid: "diff-parent-id" }, d.parent),
      fork ? h("span", { class: "nbf-muted" }, ` · forked from ${fork.from_step}${fork.keys && fork.keys.length ? ` (keys ${fork.keys.join(", ")})` : ""}`) : "");
    const [parent, self] = d.runs;
    const differs = (/** @type {unknown} */ a, /** @type {unknown} */ b) => JSON.stringify(a) !== JSON.stringify(b);
    const line = (/** @type {string} */ name, /** @type {unknown} */ a, /** @type {unknown} */ b) => h("tr", { class: differs(a, b) ? "nbf-compare-differs" : "", testid: `diff-${name.replace(" ", "-")}` },
      h("th", {}, name), h("td", { class: "nbf-mono" }, typeof a === "string" ? a : compact(a, 120)), h("td", { class: "nbf-mono" }, typeof b === "string" ? b : compact(b, 120)));
    runs.replaceChildren(
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, `parent ${parent.id}`), h("th", {}, `this run ${self.id}`))),
      h("tbody", {}, line("code version", shortVersion(parent.version), shortVersion(self.version)), line("params", parent.params, self.params)));
    const total = d.counts.changed + d.counts.added + d.counts.removed;
    body.replaceChildren(
      h("div", { class: "nbf-muted", testid: "diff-summary" }, total ? `${fmt(d.counts.changed)} changed · ${fmt(d.counts.added)} only here · ${fmt(d.counts.removed)} only in the parent` : "no output differs from the parent's"),
      ...SECTIONS.filter(([k]) => d[k].length).map(([k, name, why]) => section(k, name, why, d[k], d[`${k}_omitted`] || 0)));
  }

  /**
   * @param {string} kind
   * @param {string} name
   * @param {string} why
   * @param {DiffEntry[]} entries
   * @param {number} omitted
   */
  function section(kind, name, why, entries, omitted) {
    return h("div", { class: "nbf-compare-section", testid: `diff-${kind}` },
      h("div", { class: "nbf-compare-sec-title", title: why }, `${name} (${fmt(entries.length + omitted)})`),
      h("table", { class: "nbf-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "instance"), h("th", {}, "parent's output"), h("th", {}, "this run's"))),
        h("tbody", {}, ...entries.map((e) => h("tr", { testid: "diff-entry", "data-section": kind, "data-step": e.step, "data-key": e.key == null ? "" : String(e.key), class: "nbf-compare-entry", title: "open it", onclick: () => {
          void ctx.send("select_step", { step: e.step }).then(() => ctx.send("select_instance", { step: e.step, key: e.key }));
        } },
        h("td", { class: "nbf-mono" }, label(e.step, e.key)),
        h("td", { class: "nbf-mono nbf-diff-old" }, kind === "added" ? "—" : compact(e.before, 80)),
        h("td", { class: "nbf-mono nbf-diff-new" }, kind === "removed" ? "—" : compact(e.after, 80)))))),
      omitted ? h("div", { class: "nbf-muted" }, `and ${fmt(omitted)} more (run.diff in Python lists them all)`) : "");
  }

  return { el, render };
}
