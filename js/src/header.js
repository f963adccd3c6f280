// The header: the run's id, workflow, status and progress, and the run-wide actions; for a fork, its
// parent and the "vs parent" comparison (compare.js); the run "Fork from here" started, with a button
// that shows it in this widget (the widget's `open_run`).
import { h } from "./dom.js";
import { BAR_ORDER, TERMINAL_RUN, countsText, fmt, label } from "./format.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").Fork} Fork */

/** @param {Ctx} ctx */
export function createHeader(ctx) {
  const { model } = ctx;
  // the run's state is one pill: its status, and "interrupted" when no live process drives it
  const badge = h("span", { class: "nbf-state-status", testid: "status-badge" });
  const interrupted = h("span", { class: "nbf-state-interrupted", testid: "interrupted", hidden: true }, " · INTERRUPTED");
  const state = h("span", { class: "nbf-badge", testid: "run-state" }, badge, interrupted);
  const liveDot = h("span", { class: "nbf-live", testid: "live" });
  const runId = h("code", { class: "nbf-runid", testid: "run-id" });
  const wfName = h("span", { class: "nbf-wf" });
  const bar = h("div", { class: "nbf-bar", role: "progressbar" });
  const progress = h("span", { class: "nbf-progress", testid: "progress" });
  const countsEl = h("span", { class: "nbf-counts" });
  const ownerEl = h("div", { class: "nbf-owner" });
  const slot = h("div", { class: "nbf-msg-slot" });
  const resumeAll = h("button", { class: "nbf-btn", testid: "resume-all", title: "resume every paused instance of the run", onclick: () => ctx.act("resume_all", {}, slot) }, "Resume all paused");
  const cancelRun = h("button", { class: "nbf-btn nbf-danger", testid: "cancel-run", title: "cancel the run (asks first)", onclick: onCancel }, "Cancel run");
  const parentEl = h("span", { class: "nbf-parent", testid: "forked-from", hidden: true });
  const vsParent = h("button", { class: "nbf-btn nbf-small", testid: "diff-parent", "aria-pressed": "false", title: "what this fork changed: its items whose output differs from the parent's, and both runs' parameters and code versions",
    onclick: () => ctx.send("diff", { on: !model.get("diff") }) }, "vs parent");
  const forkedEl = h("div", { class: "nbf-forked", testid: "fork-result", hidden: true });

  const el = h("div", { class: "nbf-header" },
    h("div", { class: "nbf-title" }, h("span", { class: "nbf-logo" }, "nbflow"), runId, wfName, state, liveDot, parentEl, vsParent),
    h("div", { class: "nbf-progress-row" }, h("div", { class: "nbf-progress-info" }, bar, progress, countsEl), h("div", { class: "nbf-run-actions" }, resumeAll, cancelRun)),
    ownerEl, forkedEl, slot,
  );

  function render() {
    const sm = model.get("summary") || {};
    const status = (sm.status || "").toLowerCase();
    ctx.root.setAttribute("data-run-id", sm.id || model.get("run_id") || "");
    ctx.root.setAttribute("data-status", status);
    runId.textContent = sm.id || "";
    runId.title = "run id";
    wfName.replaceChildren("workflow ", h("b", {}, sm.workflow || ""), sm.version ? h("span", { class: "nbf-muted", title: `version ${sm.version}` }, ` @${String(sm.version).slice(0, 8)}`) : "");
    badge.textContent = status.toUpperCase();
    const stopped = !!sm.interrupted && !TERMINAL_RUN.includes(status);
    interrupted.hidden = !stopped;
    state.className = `nbf-badge nbf-st-${status}${stopped ? " nbf-interrupted" : ""}`;
    state.title = stopped ? `${status}, and no live process drives it: commands wait until it is resumed (\`nbflow resume RUN\`)` : status;
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
    const terminal = TERMINAL_RUN.includes(status);
    // a finished run has no owner to speak of; who this view acts as is said the same way everywhere
    const parts = [!terminal && owner.text ? `owner: ${owner.text}` : "", sm.actor ? `acting as ${sm.actor}` : ""].filter(Boolean);
    ownerEl.textContent = parts.join(" · ");
    ownerEl.setAttribute("data-testid", "owner");
    const past = ctx.past();
    resumeAll.disabled = past || terminal || !((sm.counts || {}).paused > 0);
    cancelRun.disabled = past || terminal;
    for (const b of [resumeAll, cancelRun]) b.title = past ? "the view shows the past (read-only): press Live to act" : b === resumeAll ? "resume every paused instance of the run" : "cancel the run (asks first)";
    parentEl.hidden = vsParent.hidden = !sm.forked_from;
    parentEl.textContent = sm.forked_from ? `fork of ${sm.forked_from}` : "";
    vsParent.setAttribute("aria-pressed", model.get("diff") ? "true" : "false");
    vsParent.classList.toggle("nbf-on", !!model.get("diff"));
    if (forked && forked.run === sm.id) forkedEl.hidden = true; // it is the run shown now
  }

  /** @type {Fork | null} */
  let forked = null;
  /**
   * The run "Fork from here" started: its id, and a button that shows it here.
   * @param {Fork} f
   */
  function showFork(f) {
    forked = f;
    const what = f.keys && f.keys.length ? f.keys.map((k) => label(f.from_step, k)).join(", ") : `step ${f.from_step}`;
    forkedEl.hidden = false;
    forkedEl.replaceChildren("Forked run ", h("code", { testid: "fork-run-id" }, f.run), ` from ${f.parent}, re-running ${what}. `,
      h("button", { class: "nbf-btn nbf-small", testid: "open-fork", title: "show the fork in this widget (its parent stays in the store)", onclick: async () => {
        const a = await ctx.act("open_run", { run: f.run }, slot);
        if (a.ok) forkedEl.hidden = true;
      } }, "Show it"),
      h("button", { class: "nbf-btn nbf-small nbf-ghost", title: "dismiss", onclick: () => { forkedEl.hidden = true; } }, "✕"));
  }

  function renderLive() {
    const live = model.get("live");
    liveDot.textContent = live ? "↻ auto-refresh on" : "";
    liveDot.title = live ? "this view updates as the run changes" : "";
  }

  function onCancel() {
    const sm = model.get("summary") || {};
    ctx.dialog.open({
      title: `Cancel run ${sm.id || ""}?`,
      text: "Every unfinished instance is cancelled; the run cannot go on afterwards (a fork can).",
      confirm: "Cancel run",
      danger: true,
      onConfirm: async () => {
        const answer = await ctx.act("cancel", {}, slot);
        return answer.ok ? true : answer.text || "refused";
      },
    });
  }

  return { el, render, renderLive, showFork, dispose: () => undefined };
}
