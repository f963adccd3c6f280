// Keyboard shortcuts, active while the focus is inside the view and not in a text field (so Jupyter's
// own shortcuts, and typing, are untouched elsewhere): j/k or the arrows move between rows, Enter
// opens one, r resume, o step over, t retry, s skip, e edit, x tick, Escape closes the dialog or the panel.
// A key the view uses goes no further, and no single character does (a notebook in command mode
// would act on it too).
import { h } from "./dom.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {{step: string, key: import("./types.js").Key}} Target */

/** @type {[string, string][]} what the legend lists */
export const KEYS = [
  ["j ↓", "next row"], ["k ↑", "previous row"], ["Enter", "open the row"], ["x", "tick the row"],
  ["r", "resume"], ["o", "step over"], ["t", "retry"], ["s", "skip…"], ["e", "edit…"], ["Esc", "close the dialog or the panel"],
];

/**
 * @param {Ctx} ctx
 * @param {{
 *   table: {move: (d: number) => boolean, focusedTarget: () => Target | null, tickFocused: () => boolean, openFocused: () => boolean},
 *   detail: {escape: () => boolean, askSkip: (t?: Target | null) => void, editSelected: () => boolean,
 *     actOn: (verb: string, t: Target) => Promise<unknown>},
 *   bulk: unknown,
 * }} parts
 */
export function shortcuts(ctx, { table, detail }) {
  const { model, root } = ctx;
  /** The instance a verb key acts on: the focused row, else the open instance. */
  const target = () => {
    const t = table.focusedTarget();
    if (t) return t;
    const sel = model.get("selected");
    return sel ? { step: sel.step, key: sel.key } : null;
  };
  /** @param {string} verb */
  const verbOn = (verb) => {
    const t = target();
    if (!t) return false;
    void detail.actOn(verb, t);
    return true;
  };
  /** @type {Record<string, () => boolean>} */
  const map = {
    j: () => table.move(1),
    ArrowDown: () => table.move(1),
    k: () => table.move(-1),
    ArrowUp: () => table.move(-1),
    Enter: () => table.openFocused(),
    x: () => table.tickFocused(),
    r: () => verbOn("resume"),
    o: () => verbOn("step_over"),
    t: () => verbOn("retry"),
    s: () => {
      const t = target();
      if (!t) return false;
      detail.askSkip(t);
      return true;
    },
    e: () => {
      if (detail.editSelected()) return true;
      const bulkEdit = /** @type {HTMLButtonElement | null} */ (root.querySelector("[data-testid=edit-selected]"));
      if (bulkEdit && !bulkEdit.disabled) bulkEdit.click();
      return !!bulkEdit && !bulkEdit.disabled;
    },
    Escape: () => detail.escape(),
  };

  /** @param {KeyboardEvent} e */
  const onKey = (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || ctx.dialog.isOpen()) return;
    const t = /** @type {HTMLElement} */ (e.target);
    if (t.closest("input, textarea, select, [contenteditable=''], [contenteditable=true], dialog")) return;
    // Enter and the arrows keep their usual meaning on a button, a fold or a tree leaf
    if ((e.key === "Enter" || e.key.startsWith("Arrow")) && !t.closest("tr[data-testid=instance-row]") && t !== root) return;
    const fn = map[e.key];
    // A single character goes no further while the focus is in the view, whether or not it is one of
    // ours: JupyterLab's command mode would take it (x cuts the cell, d d deletes it, a/b insert one).
    const handled = fn ? fn() : false;
    if (handled || e.key.length === 1) {
      e.preventDefault();
      e.stopPropagation();
    }
  };
  root.addEventListener("keydown", onKey);
  if (!root.hasAttribute("tabindex")) root.setAttribute("tabindex", "-1");
  root.setAttribute("aria-keyshortcuts", "j k ArrowDown ArrowUp Enter x r o t s e Escape");

  const legend = h("details", { class: "nbf-fold nbf-keys", testid: "shortcuts" },
    h("summary", { title: "shortcuts work while the focus is in this view, outside a text field" }, "Keyboard shortcuts"),
    h("dl", { class: "nbf-keys-list" }, KEYS.flatMap(([k, what]) => [h("dt", {}, k.split(" ").map((one) => h("kbd", {}, one))), h("dd", {}, what)])));

  return { legend, dispose: () => root.removeEventListener("keydown", onKey) };
}
