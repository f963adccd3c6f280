// The bulk bar: what is selected (ticked rows, every instance matching the filter, or an error
// group: the controller holds it, so 100,000 keys never travel) and the verbs on it, each one
// command in the audit, each asked in the dialog: Resume, Retry, Skip (one output for all) and
// Edit (an expression over the inputs, previewed on the first instances, then applied); and "Fork
// from here": a new run that re-runs the selected items and what depends on them (forkDialog).
import { field } from "./dialog.js";
import { h } from "./dom.js";
import { compact, fmt, plural } from "./format.js";

/** @typedef {import("./types.js").Ctx} Ctx */

const PREVIEW_DELAY_MS = 250;

/** @param {Ctx} ctx */
export function createBulk(ctx) {
  const { model } = ctx;
  const slot = h("div", { class: "nbf-msg-slot" });
  const labelEl = h("span", { class: "nbf-sel-label", testid: "selection", "aria-live": "polite" });
  const allBtn = h("button", { class: "nbf-btn nbf-small", testid: "select-filter", title: "select every instance matching the table's filter (all pages)", onclick: () => ctx.send("select", { filter: true }) }, "Select all matching");
  const clearBtn = h("button", { class: "nbf-btn nbf-small nbf-ghost", testid: "select-clear", title: "select nothing", onclick: () => ctx.send("select", {}) }, "Clear");
  /**
   * @param {string} testid
   * @param {string} name  the exact accessible name
   * @param {string} title
   * @param {() => void} fn
   */
  const verbBtn = (testid, name, title, fn) => h("button", { class: "nbf-btn nbf-small", testid, title, onclick: fn }, name);
  const bResume = verbBtn("resume-selected", "Resume selected", "let the selected instances go on (an error-paused one then fails)", () => confirmVerb("resume", "Resume"));
  const bRetry = verbBtn("retry-selected", "Retry selected", "run the selected instances again with today's code and their current inputs", () => confirmVerb("retry", "Retry"));
  const bSkip = verbBtn("skip-selected", "Skip selected", "skip the selected instances, giving one output for all", () => askSkip());
  const bEdit = verbBtn("edit-selected", "Edit selected", "change one input of every selected instance with an expression", () => askEdit());
  const bFork = verbBtn("fork-selected", "Fork from here", "a new run that re-runs the selected items, the matching items of the steps over them and what needs them whole, reusing every other output", () => forkDialog(ctx, model.get("selected_step") || "", what(), slot, true));
  const buttons = [bResume, bRetry, bSkip, bEdit, bFork];
  const el = h("div", { class: "nbf-bulk", testid: "bulk-bar", role: "toolbar", "aria-label": "Selected instances" },
    h("div", { class: "nbf-row" }, labelEl, allBtn, clearBtn, h("span", { class: "nbf-bulk-verbs" }, ...buttons)), slot);

  const selection = () => model.get("selection") || { kind: "none", count: 0 };
  const what = () => {
    const s = selection();
    return s.label || plural(s.count, "instance");
  };

  function render() {
    const step = model.get("selected_step");
    const node = ((model.get("dag") || {}).nodes || []).find((n) => n.step === step);
    el.hidden = !step || !node || node.kind !== "foreach"; // a task's one instance has its own panel
    if (el.hidden) return;
    const s = selection();
    const n = s.count || 0;
    labelEl.textContent = n ? `Selected: ${what()}` : "Nothing selected";
    labelEl.title = n ? "" : "tick rows (x), choose an error group, or select all matching the filter";
    labelEl.classList.toggle("nbf-muted", !n);
    const past = ctx.past();
    for (const b of buttons) b.disabled = !n || past;
    clearBtn.hidden = !n;
    const p = model.get("instances") || {};
    allBtn.textContent = p.total ? `Select all matching (${fmt(p.total)})` : "Select all matching";
    allBtn.disabled = !p.total;
  }

  /**
   * @param {string} verb
   * @param {string} confirm
   */
  function confirmVerb(verb, confirm) {
    const step = model.get("selected_step");
    ctx.dialog.open({
      title: `${confirm} ${what()}?`,
      text: verb === "resume" ? "Each goes on from where it paused; one paused on an error then fails." : "Each runs again, with today's code and its current inputs.",
      body: [field("Reason", reasonInput())],
      confirm,
      onConfirm: () => send(verb, { step, selected: true }),
    });
  }

  function askSkip() {
    const step = model.get("selected_step");
    const out = h("textarea", { class: "nbf-editor-text nbf-dialog-json", testid: "bulk-skip-output", spellcheck: "false", rows: 3 }, "null");
    ctx.dialog.open({
      title: `Skip ${what()}`,
      text: "Downstream steps receive this one output in place of each.",
      body: [field("Output (JSON)", out), field("Reason", reasonInput())],
      confirm: "Skip",
      onConfirm: () => {
        try {
          JSON.parse(out.value);
        } catch (e) {
          return Promise.resolve(`Invalid JSON: ${/** @type {Error} */ (e).message}`);
        }
        return send("skip", { step, selected: true, json: out.value });
      },
    });
  }

  function askEdit() {
    const step = model.get("selected_step");
    const p = model.get("instances") || {};
    const d = model.get("detail");
    const names = p.inputs && p.inputs.length ? p.inputs
      : d && d.step === step && d.inputs && Object.keys(d.inputs).length ? Object.keys(d.inputs) : ["item"];
    const input = h("select", { class: "nbf-input", testid: "edit-input" }, names.map((n) => h("option", { value: n }, n)));
    const expr = h("input", { class: "nbf-input nbf-grow nbf-mono", testid: "edit-expr", placeholder: '{**item, "amount": item["amount"].replace(",", ".")}', spellcheck: "false" });
    const previewEl = h("ul", { class: "nbf-preview", testid: "edit-preview", "aria-label": "Preview", "aria-live": "polite" });
    const previewHead = h("div", { class: "nbf-muted nbf-preview-head" }, "Type an expression over the inputs by name; its value becomes the new input.");
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer = undefined;
    let asked = 0;
    const preview = async () => {
      const text = expr.value.trim();
      const mine = ++asked;
      if (!text) {
        previewEl.replaceChildren();
        previewHead.textContent = "Type an expression over the inputs by name; its value becomes the new input.";
        return;
      }
      const a = await ctx.ask("preview_edit", { input: input.value, expr: text });
      if (mine !== asked) return; // a newer expression was typed meanwhile
      if (!a.ok) {
        previewHead.textContent = a.text || "cannot evaluate the expression";
        previewHead.classList.add("nbf-fg-failed");
        previewEl.replaceChildren();
        return;
      }
      previewHead.classList.remove("nbf-fg-failed");
      const rows = a.preview || [];
      previewHead.textContent = `${plural(a.count ?? rows.length, "instance")} would change; the first:`;
      previewEl.replaceChildren(...rows.map((r) => h("li", { class: "nbf-preview-row" },
        h("code", { class: "nbf-preview-key" }, String(r.key)),
        r.error ? h("span", { class: "nbf-fg-failed" }, ` ⚠ ${r.error}`) : [h("code", { class: "nbf-diff-old" }, ` ${compact(r.old, 80)}`), h("span", { class: "nbf-diff-arrow" }, " → "), h("code", { class: "nbf-diff-new" }, compact(r.new, 80))])));
    };
    const later = () => {
      clearTimeout(timer);
      timer = setTimeout(preview, PREVIEW_DELAY_MS);
    };
    expr.addEventListener("input", later);
    input.addEventListener("change", later);
    const reason = reasonInput();
    ctx.dialog.open({
      title: `Edit ${what()}`,
      text: "One command changes the chosen input of each; the history keeps every old and new value.",
      body: [field("Input", input), field("Expression", expr), previewHead, previewEl, field("Reason", reason)],
      confirm: "Apply",
      onConfirm: async () => {
        if (!expr.value.trim()) return "type an expression first";
        return send("edit_selected", { step, input: input.value, expr: expr.value.trim(), reason: reason.value.trim() || null });
      },
      onClose: () => clearTimeout(timer),
    });
    if (names.length === 1) expr.focus();
  }

  /** the dialog's reason field (read when it is confirmed) */
  function reasonInput() {
    return h("input", { class: "nbf-input nbf-grow", testid: "bulk-reason", placeholder: "recorded in the history", name: "reason" });
  }

  /**
   * @param {string} verb
   * @param {Record<string, unknown>} args
   * @returns {Promise<true | string>}
   */
  async function send(verb, args) {
    const r = /** @type {HTMLInputElement | null} */ (ctx.dialog.el.querySelector("input[name=reason]"));
    if (r && r.value.trim() && !("reason" in args)) args.reason = r.value.trim();
    const answer = await ctx.act(verb, args, slot);
    return answer.ok ? true : answer.text || "refused";
  }

  return { el, render };
}

/**
 * Ask, then start a fork from `step` (its selected items, or the whole step) in the kernel: the
 * answer names the new run, which the header shows with a button to open it here.
 * @param {Ctx} ctx
 * @param {string} step
 * @param {string} what  what is re-run, in words
 * @param {HTMLElement} slot  where the answer shows
 * @param {boolean} selected  fork the selected items (else the whole step)
 */
export function forkDialog(ctx, step, what, slot, selected) {
  ctx.dialog.open({
    title: `Fork from ${selected ? what : step}?`,
    text: `A new run with the same parameters re-runs ${selected ? what : `step ${step}`} and what depends on ${selected ? "them" : "it"}, with the code of this kernel; every other output is reused from this run.`,
    confirm: "Fork",
    onConfirm: async () => {
      const answer = await ctx.act("fork", selected ? { step, selected: true } : { step }, slot);
      if (answer.ok && answer.fork) ctx.forked(answer.fork);
      return answer.ok ? true : answer.text || "refused";
    },
  });
}
