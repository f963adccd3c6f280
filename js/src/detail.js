// The selected instance's panel: where it stands and why, the verbs its state accepts (skip asks for
// its output in the dialog; the raw JSON editor edits the inputs or the output as a whole), an
// approval's decision form, a signal's token, and its inputs and output (JSON trees where one leaf
// is edited in place), error, logs, attempts and history.
import { field } from "./dialog.js";
import { copyText, h } from "./dom.js";
import { clock, compact, duration, label, plural, pretty, time, quote } from "./format.js";
import { WHEN, describeEvent, notStarted, pauseWhen, tookText, unifiedDiff, whyText } from "./describe.js";
import { focusLeaf, jsonTree, setIn } from "./jsontree.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").Key} Key */

const HISTORY_SHOWN = 6; // newest events shown before "show older"
const SHORT_LOGS = 6; // logs up to this many lines start unfolded
const FOLLOW_MS = 60_000; // how long the panel waits to follow a step over to the instance it pauses
const FOLLOWED_MS = 10_000; // a step over's outcome told twice within this is followed once

/** @typedef {{mode: "set_inputs" | "set_output", step: string, key: Key}} Editor  the open JSON editor */

/** @param {Ctx} ctx */
export function createDetail(ctx) {
  const { model } = ctx;
  /**
   * @type {{editor: Editor | null, detailFor: string | null, statusFor: string | null, historyAll: boolean, reveal: boolean,
   *   open: {inputs: Set<string>, output: Set<string>}, drawn: {inputs: string | null, output: string | null},
   *   follow: {step: string, origin: string, until: number} | null, followed: {text: string, at: number} | null}}
   * what the panel remembers between renders (`open`: the tree's folds; `drawn`: what the trees show;
   * `follow`: the instance a step over will pause, to open once it has)
   */
  const ui = { editor: null, detailFor: null, statusFor: null, historyAll: false, reveal: false, follow: null, followed: null,
    open: { inputs: new Set(), output: new Set() }, drawn: { inputs: null, output: null } };
  const panelTitle = h("span", { class: "nbf-panel-title" });
  const panelStatus = h("span", { class: "nbf-pill" });
  const whyEl = h("div", { class: "nbf-why", testid: "why" });
  const closePanel = h("button", { class: "nbf-btn nbf-small nbf-ghost", title: "close", onclick: () => ctx.send("close_instance") }, "✕");
  const target = () => {
    const d = model.get("selected");
    return d ? { step: d.step, key: d.key } : null;
  };
  /** @param {string} verb  a verb on the selected instance alone */
  const verbOn = (verb) => {
    const t = target();
    if (t) void actOn(verb, t);
  };
  /** The status the panel shows now (null: none, or not loaded). */
  const shownStatus = () => {
    const d = model.get("detail");
    return d && !d.missing ? d.status : null;
  };
  /**
   * A verb on one instance; when it is the open one and its status moved on before the answer came
   * (a retry that already failed again), the answer says where it stands now.
   * @param {string} verb
   * @param {{step: string, key: Key}} t
   * @param {Record<string, unknown>} [extra]
   */
  async function actOn(verb, t, extra = {}) {
    const sel = model.get("selected");
    const open = !!sel && sel.step === t.step && (sel.key ?? null) === (t.key ?? null);
    const which = ui.detailFor;
    const before = shownStatus();
    const answer = await ctx.act(verb, { ...t, ...extra }, slot);
    if (verb === "step_over" && answer.ok && (await follow(answer.text))) return answer;
    const now = shownStatus();
    if (open && answer.ok && answer.text && ui.detailFor === which && now !== null && now !== before) {
      ui.statusFor = now;
      ctx.placeMessage(slot);
      ctx.showMessage({ ok: true, text: `${answer.text} · it is ${now} now` });
    }
    return answer;
  }
  /**
   * After a step over, the panel goes where a debugger's cursor goes: to the first instance it
   * pauses. The answer names them ("stepped over load; pausing before: clean",
   * "...; pausing before: double (the item made from enrich:3), summary"): a named instance opens at
   * once; a foreach item not made yet opens once a row of its step shows it paused by this step over
   * (followRows). True when the panel moved or will.
   * @param {string | null} text
   */
  async function follow(text) {
    const m = /^stepped over (.+?); pausing before: (.+)$/.exec(text || "");
    if (!m) return false;
    // the answer, and the same outcome told to every view of the widget: followed once
    if (ui.followed && ui.followed.text === text && Date.now() - ui.followed.at < FOLLOWED_MS) return true;
    ui.followed = { text: /** @type {string} */ (text), at: Date.now() };
    const first = m[2].split(", ")[0].trim();
    const named = /^([^\s:(]+)(?::(\S+))?$/.exec(first); // "clean", "double:3"
    const step = named ? named[1] : first.split(" ")[0];
    const node = ((model.get("dag") || {}).nodes || []).find((n) => n.step === step);
    if (!node) return false;
    ui.follow = null;
    await ctx.send("select_step", { step });
    if (named && (named[2] !== undefined || node.kind !== "foreach")) {
      ui.reveal = true;
      await ctx.send("select_instance", { step, key: named[2] ?? null });
    } else {
      ui.follow = { step, origin: `step over ${m[1]}`, until: Date.now() + FOLLOW_MS };
      followRows();
    }
    ctx.placeMessage(slot);
    ctx.showMessage({ ok: true, text });
    return true;
  }
  /** The rows changed: open the instance a step over paused, when it is there (see follow). */
  function followRows() {
    const f = ui.follow;
    if (!f) return;
    if (Date.now() > f.until || model.get("selected_step") !== f.step) {
      ui.follow = null;
      return;
    }
    const rows = (model.get("instances") || {}).rows || [];
    const r = rows.find((x) => x.step === f.step && x.status === "paused" && !!x.pause && x.pause.detail === f.origin);
    if (!r) return;
    ui.follow = null;
    ui.reveal = true;
    void ctx.send("select_instance", { step: r.step, key: r.key });
  }
  const slot = h("div", { class: "nbf-msg-slot" });
  /**
   * @param {string} testid
   * @param {string} text
   * @param {string} title
   * @param {() => unknown} fn
   */
  const actionBtn = (testid, text, title, fn) => h("button", { class: "nbf-btn", testid, title, onclick: fn }, text);
  const bResume = actionBtn("resume-one", "Resume", "let this instance go on", () => verbOn("resume"));
  const bStepOver = actionBtn("step-over", "Step over", "let this instance go on, and pause what consumes its output before its body (o)", () => verbOn("step_over"));
  const bRetry = actionBtn("retry", "Retry", "run it again with today's code and its current inputs", () => verbOn("retry"));
  const bSkip = actionBtn("skip", "Skip…", "skip it, giving the output it stands for (asked in a dialog)", () => askSkip());
  const bInputs = actionBtn("edit-inputs", "Edit inputs as JSON…", "change its inputs as one JSON text (paused before its body, on an error, or failed); or click one value in the tree below", () => openEditor("set_inputs"));
  const bOutput = actionBtn("edit-output", "Edit output as JSON…", "change its output as one JSON text (paused after its body); or click one value in the tree below", () => openEditor("set_output"));
  /** @type {Record<string, HTMLButtonElement>} */
  const verbButtons = { resume: bResume, step_over: bStepOver, retry: bRetry, skip: bSkip, set_inputs: bInputs, set_output: bOutput };
  // in a kernel only (the widget): bind its inputs in the notebook and put its body in a cell below
  const bDebug = actionBtn("debug-cell", "Debug in a cell", "bind this instance's inputs as variables in the notebook and put its step's body in a new cell below the widget", () => void debugInCell());
  const OWN_FORM = ["approve", "reject"]; // the decision form below has them
  const otherVerbs = h("span", { class: "nbf-other-verbs" }); // a verb the table gained that has no button of its own
  const actionsRow = h("div", { class: "nbf-actions" }, bResume, bStepOver, bRetry, bSkip, bInputs, bOutput, otherVerbs, bDebug);

  // an approval gate that waits: approve or reject, with a comment and an optional JSON payload
  const apComment = h("input", { class: "nbf-input nbf-grow", testid: "approval-comment", placeholder: "comment (optional, recorded with the decision)" });
  const apPayload = h("textarea", { class: "nbf-editor-text nbf-payload", testid: "approval-payload", spellcheck: "false", rows: 2, placeholder: "payload (optional JSON): becomes the gate's output, e.g. {\"region\": \"eu\"}" });
  const apError = h("div", { class: "nbf-json-error", testid: "approval-error" });
  /** @param {"approve" | "reject"} verb */
  const decide = (verb) => {
    const t = target();
    if (!t) return;
    const text = apPayload.value.trim();
    if (verb === "approve" && text) {
      try {
        JSON.parse(text);
      } catch (e) {
        apError.textContent = `Invalid JSON: ${/** @type {Error} */ (e).message}`;
        apPayload.classList.add("nbf-invalid");
        return; // invalid JSON never leaves the browser
      }
    }
    apError.textContent = "";
    apPayload.classList.remove("nbf-invalid");
    ctx.act(verb, verb === "approve" ? { step: t.step, comment: apComment.value.trim() || null, json: text || null } : { step: t.step, comment: apComment.value.trim() || null }, slot);
  };
  apPayload.addEventListener("input", () => {
    apError.textContent = "";
    apPayload.classList.remove("nbf-invalid");
  });
  const bApprove = h("button", { class: "nbf-btn nbf-primary", testid: "approve", title: "approve this gate (the payload, if any, becomes its output)", onclick: () => decide("approve") }, "Approve");
  const bReject = h("button", { class: "nbf-btn nbf-danger", testid: "reject", title: "reject this gate: it fails and what depends on it is cancelled", onclick: () => decide("reject") }, "Reject");
  const approvalBox = h("div", { class: "nbf-callout", testid: "approval", hidden: true },
    h("div", { class: "nbf-row" }, apComment), apPayload, apError, h("div", { class: "nbf-row" }, bApprove, bReject));

  // a wait for a signal: the token to hand to whoever sends it
  const tokenEl = h("input", { class: "nbf-input nbf-grow nbf-token", testid: "token", readonly: true, title: "the signal's correlation token" });
  const copyToken = h("button", { class: "nbf-btn", testid: "copy-token", title: "copy the token to the clipboard", onclick: async () => {
    const ok = await copyText(tokenEl.value, tokenEl);
    copyToken.textContent = ok ? "Copied ✓" : "Press Ctrl+C";
    setTimeout(() => (copyToken.textContent = "Copy"), 1800);
  } }, "Copy");
  const tokenHint = h("div", { class: "nbf-muted nbf-token-hint" });
  const signalBox = h("div", { class: "nbf-callout", testid: "signal", hidden: true }, h("div", { class: "nbf-row" }, h("span", { class: "nbf-field-label" }, "token"), tokenEl, copyToken), tokenHint);

  const edTitle = h("div", { class: "nbf-section-title" });
  const edText = h("textarea", { class: "nbf-editor-text", testid: "json-editor", spellcheck: "false", rows: 8 });
  const edReason = h("input", { class: "nbf-input nbf-grow", testid: "reason", placeholder: "reason (recorded in the history)" });
  const edError = h("div", { class: "nbf-json-error", testid: "json-error" });
  const edSave = h("button", { class: "nbf-btn nbf-primary", testid: "json-save", onclick: saveEditor }, "Save");
  const edCancel = h("button", { class: "nbf-btn", testid: "json-cancel", onclick: () => closeEditor() }, "Cancel");
  edText.addEventListener("input", () => validateEditor());
  edText.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      saveEditor();
    } else if (e.key === "Escape") {
      e.preventDefault();
      closeEditor();
      bInputs.focus();
    }
  });
  for (const elem of [edText, edReason, apComment, apPayload, tokenEl]) ctx.stop(elem);
  const editor = h("div", { class: "nbf-editor", hidden: true }, edTitle, edText, edError, h("div", { class: "nbf-row" }, edReason, edSave, edCancel));

  const inputsEl = h("div", { class: "nbf-pre nbf-tree-box", testid: "inputs" });
  const outputEl = h("div", { class: "nbf-pre nbf-tree-box", testid: "output" });
  const errorLine = h("div", { class: "nbf-error-line" });
  const tbSummary = h("summary", {});
  const tbPre = h("pre", { class: "nbf-pre nbf-traceback" });
  const tbFold = h("details", { class: "nbf-fold", testid: "traceback" }, tbSummary, tbPre);
  const errorEl = h("div", { class: "nbf-error", testid: "error" }, errorLine, tbFold);
  const logsEl = h("pre", { class: "nbf-pre nbf-logs", testid: "logs" });
  const logsSummary = h("summary", { class: "nbf-section-title" });
  const logsFold = h("details", { class: "nbf-section nbf-fold" }, logsSummary, logsEl);
  const attemptsEl = h("div", { class: "nbf-attempts", testid: "attempts" });
  const historyEl = h("ol", { class: "nbf-history", testid: "history" });
  const historyMore = h("button", { class: "nbf-btn nbf-small nbf-ghost nbf-more", onclick: () => {
    ui.historyAll = !ui.historyAll;
    render();
  } });
  /**
   * @param {string} title
   * @param {HTMLElement} body
   * @param {import("./dom.js").Attrs} [extra]
   */
  const section = (title, body, extra = {}) => h("div", { class: "nbf-section", ...extra }, h("div", { class: "nbf-section-title" }, title), body);
  const errorSection = section("Error", errorEl);
  // a hot fix: the step's code changed after this instance's last attempt started
  const codeDiffEl = h("div", { class: "nbf-code-diff-box" });
  const codeSection = section("Code changed since it started", codeDiffEl, { testid: "code-change" });
  const loggedEl = h("ul", { class: "nbf-logged", testid: "logged" });
  const loggedSection = section("Logged", loggedEl);
  const changedPill = h("span", { class: "nbf-tag nbf-tag-changed", testid: "panel-code-changed", hidden: true, title: "its step's code changed after its last attempt started: a retry or a resume runs the new code" }, "code changed");
  const panel = h("div", { class: "nbf-panel", testid: "instance-panel", hidden: true },
    h("div", { class: "nbf-panel-head" }, panelTitle, panelStatus, changedPill, h("span", { class: "nbf-spacer" }), closePanel),
    whyEl,
    actionsRow,
    slot,
    approvalBox,
    signalBox,
    editor,
    h("div", { class: "nbf-grid2" }, section("Inputs", inputsEl), section("Output", outputEl)),
    errorSection,
    codeSection,
    loggedSection,
    h("div", { class: "nbf-grid2" }, logsFold, section("Attempts", attemptsEl)),
    section("History", h("div", {}, historyEl, historyMore)));


  function render() {
    const sel = model.get("selected");
    const d = model.get("detail");
    panel.hidden = !sel;
    if (!sel) {
      closeEditor();
      ctx.clearMessage(slot);
      ui.detailFor = ui.statusFor = null;
      return;
    }
    if (ui.editor && (ui.editor.step !== sel.step || (ui.editor.key ?? null) !== (sel.key ?? null))) closeEditor();
    const which = `${sel.step}\u0000${sel.key ?? ""}`;
    const fresh = ui.detailFor !== which;
    if (fresh) {
      // another instance: fold its traceback, show its newest history, clear the decision form
      ui.detailFor = which;
      ui.historyAll = false;
      tbFold.open = false;
      apComment.value = apPayload.value = apError.textContent = "";
      ui.open.inputs.clear();
      ui.open.output.clear();
      ui.drawn.inputs = ui.drawn.output = null;
      ctx.clearMessage(slot); // an answer about another instance
      if (ui.reveal) panel.scrollIntoView({ block: "nearest" });
      ui.reveal = false;
    }
    // the answer of a verb is about the status it changed: once the status moves on, it is stale
    const status = d && !d.missing ? d.status : null;
    if (!fresh && ui.statusFor !== null && status !== null && status !== ui.statusFor) ctx.clearMessage(slot, true);
    if (status !== null) ui.statusFor = status;
    panelTitle.textContent = label(sel.step, sel.key);
    if (!d || d.missing) {
      panelStatus.textContent = d ? "not started" : "loading…";
      panelStatus.className = "nbf-pill nbf-st-pending";
      whyEl.textContent = d ? "Not started yet: it waits for its upstream steps." : "";
      for (const b of Object.values(verbButtons)) b.disabled = true;
      actionsRow.hidden = true;
      changedPill.hidden = codeSection.hidden = loggedSection.hidden = true;
      approvalBox.hidden = signalBox.hidden = true;
      inputsEl.textContent = outputEl.textContent = "";
      ui.drawn.inputs = ui.drawn.output = null;
      logsEl.textContent = "(nothing captured)";
      logsSummary.textContent = "Logs · none";
      errorSection.hidden = true;
      attemptsEl.replaceChildren(h("span", { class: "nbf-muted" }, "not started yet"));
      historyEl.replaceChildren();
      historyMore.hidden = true;
      return;
    }
    const bps = ctx.breakpointsById();
    const node = (model.get("dag").nodes || []).find((n) => n.step === sel.step);
    panelStatus.textContent = d.status + (d.status === "paused" && d.pause ? ` · ${WHEN[pauseWhen(d.pause)] || pauseWhen(d.pause)}` : "");
    panelStatus.className = `nbf-pill nbf-st-${d.status}`;
    whyEl.textContent = whyText(d, bps);
    const verbs = new Set(d.verbs || []);
    // paused: every verb shows (the disabled ones say what a pause elsewhere would allow); otherwise only what applies
    for (const [verb, b] of Object.entries(verbButtons)) {
      b.disabled = !verbs.has(verb);
      b.hidden = d.status !== "paused" && !verbs.has(verb);
    }
    const others = [...verbs].filter((v) => !(v in verbButtons) && !OWN_FORM.includes(v));
    if (otherVerbs.dataset.verbs !== others.join(",")) {
      otherVerbs.replaceChildren(...others.map((v) => actionBtn(`verb-${v}`, v.replaceAll("_", " "), `${v} this instance`, () => verbOn(v))));
      otherVerbs.dataset.verbs = others.join(",");
    }
    bDebug.hidden = !(model.get("summary") || {}).kernel || !!d.at; // the inputs bound are today's
    actionsRow.hidden = d.status !== "paused" && !others.length && !Object.keys(verbButtons).some((v) => verbs.has(v)) && bDebug.hidden;
    // a hot fix changes no instance: its row on the page and its step's node may know before the detail does
    const row = ((model.get("instances") || {}).rows || []).find((r) => r.step === sel.step && (r.key ?? null) === (sel.key ?? null));
    const changed = row && row.code_changed !== undefined ? row.code_changed : !!d.code_changed;
    const diff = changed ? d.code_diff || (node && node.code_change ? node.code_change.diff : null) : null;
    changedPill.hidden = !changed;
    codeSection.hidden = !diff;
    if (diff && codeDiffEl.dataset.diff !== diff) {
      codeDiffEl.dataset.diff = diff;
      codeDiffEl.replaceChildren(h("div", { class: "nbf-muted" }, "A retry or a resume runs the new code."), unifiedDiff(diff));
    }
    const logged = d.logged || [];
    loggedSection.hidden = !logged.length;
    loggedEl.replaceChildren(...logged.map((l) => h("li", { title: compact(l.value, 2000) }, h("code", {}, l.expression), " = ",
      l.error ? h("span", { class: "nbf-fg-failed" }, l.error) : h("code", { class: "nbf-diff-new" }, compact(l.value, 160)),
      h("span", { class: "nbf-muted" }, ` · ${WHEN[l.when] || l.when || ""} · ${time(l.at)}`))));
    approvalBox.hidden = !verbs.has("approve");
    signalBox.hidden = !(d.status === "waiting" && d.token && pauseWhen(d.pause) !== "approval");
    if (!signalBox.hidden) {
      tokenEl.value = /** @type {string} */ (d.token); // shown only with a token
      tokenHint.replaceChildren("Deliver the payload with ", h("code", {}, "nbflow signal TOKEN --payload JSON"), " or ", h("code", {}, "nbflow.signal(token, payload)"), ".");
    }
    drawTrees(d, verbs);
    errorSection.hidden = !d.error;
    if (d.error) {
      errorLine.replaceChildren(h("b", {}, d.error.type), ": ", d.error.message);
      const tb = d.error.traceback || "";
      tbFold.hidden = !tb.trim();
      tbSummary.textContent = `Traceback · ${plural(tb.trimEnd().split("\n").length, "line")}`;
      tbPre.textContent = tb;
    }
    const logs = d.logs || "";
    const lines = logs ? logs.trimEnd().split("\n").length : 0;
    logsEl.textContent = logs ? (d.logs_truncated ? "…\n" : "") + logs : "(nothing captured)";
    logsEl.classList.toggle("nbf-empty-pre", !logs);
    logsSummary.textContent = lines ? `Logs · ${plural(lines, "line")}${d.logs_truncated ? " (the last)" : ""}` : "Logs · none";
    if (fresh) logsFold.open = lines > 0 && lines <= SHORT_LOGS;
    const lastAttempt = d.attempts && d.attempts.length ? d.attempts[d.attempts.length - 1] : null;
    attemptsEl.replaceChildren(...(d.attempts && d.attempts.length ? d.attempts.map((a) =>
      h("div", { class: "nbf-attempt" }, h("b", {}, `#${a.attempt ?? "?"}`), h("span", { class: "nbf-muted" }, ` ${clock(a.started)} `),
        a.outcome ? h("span", { class: `nbf-fg-${a.outcome === "succeeded" ? "succeeded" : a.outcome === "retrying" || a.outcome === "attempt_failed" ? "paused" : "failed"}` }, a.outcome.replace("_", " ")) : h("span", { class: "nbf-fg-running" }, "running"),
        a.started && a.finished ? h("span", { class: "nbf-muted" }, ` · ${a === lastAttempt ? tookText(d) : duration(a.started, a.finished)}`) : "",
        a.error ? h("div", { class: "nbf-attempt-error", title: a.error }, a.error) : "")) :
      [h("span", { class: "nbf-muted" }, d.attempt ? plural(d.attempt, "attempt") : notStarted(d.status, node && node.kind))]));
    const words = { bps, kind: node ? node.kind : "task" };
    const hist = (d.history || []).slice().reverse();
    const shown = ui.historyAll ? hist : hist.slice(0, HISTORY_SHOWN);
    historyEl.replaceChildren(...shown.map((e) => {
      const data = e.data || {};
      const reason = e.actor && e.kind !== "signal_refused" ? data.reason : null; // an operator's reason (a pause has its own "reason")
      const { head, tail, block } = describeEvent(e, words);
      return h("li", { "data-kind": e.kind, "data-event-id": e.id, class: `nbf-ev nbf-ev-${e.kind}` },
        h("span", { class: "nbf-h-time", title: e.ts || "" }, time(e.ts)),
        h("span", { class: "nbf-h-text" }, h("b", {}, head), e.actor ? h("span", { class: "nbf-muted" }, ` by ${e.actor}`) : "", tail || "",
          reason ? h("span", { class: "nbf-reason" }, ` — ${quote(reason)}`) : ""),
        block || "");
    }));
    const older = hist.length - shown.length + (d.history_omitted || 0);
    historyMore.hidden = hist.length <= HISTORY_SHOWN;
    historyMore.textContent = ui.historyAll ? "show the newest only" : `show ${plural(older, "older event")}`;
    if (ui.historyAll && d.history_omitted) historyEl.append(h("li", { class: "nbf-muted" }, `… ${plural(d.history_omitted, "older event")} not loaded (nbflow history)`));
  }

  // ---------------------------------------------------------------- the JSON trees
  /**
   * @param {import("./types.js").Detail} d
   * @param {Set<string>} verbs
   */
  function drawTrees(d, verbs) {
    const inputs = d.inputs || {};
    const readonly = d.readonly_inputs || [];
    const canInputs = verbs.has("set_inputs");
    const canOutput = verbs.has("set_output") && d.output_editable !== false;
    const sigIn = JSON.stringify([inputs, readonly, canInputs]);
    // redrawn only when what it shows changed (a refresh keeps the folds and an edit in progress)
    if (ui.drawn.inputs !== sigIn && !inputsEl.querySelector("[data-testid=tree-edit]")) {
      ui.drawn.inputs = sigIn;
      const empty = !Object.keys(inputs).length;
      inputsEl.classList.toggle("nbf-empty-pre", empty);
      inputsEl.replaceChildren(empty ? "(no inputs)" : jsonTree(inputs, ui.open.inputs, {
        editable: (name) => canInputs && !readonly.includes(name),
        stop: ctx.stop,
        onEdit: (path, value) => saveLeaf("set_inputs", path, value),
        onClose: (path) => {
          render();
          focusLeaf(inputsEl, path);
        },
      }));
      if (readonly.length) inputsEl.title = `not editable here (not JSON, or too large): ${readonly.join(", ")}`;
      else inputsEl.removeAttribute("title");
    }
    const sigOut = JSON.stringify([d.has_output, d.output, canOutput]);
    if (ui.drawn.output !== sigOut && !outputEl.querySelector("[data-testid=tree-edit]")) {
      ui.drawn.output = sigOut;
      outputEl.classList.toggle("nbf-empty-pre", !d.has_output);
      outputEl.replaceChildren(!d.has_output ? "(no output yet)" : jsonTree(d.output, ui.open.output, {
        single: true,
        editable: () => canOutput,
        stop: ctx.stop,
        onEdit: (path, value) => saveLeaf("set_output", path, value),
        onClose: (path) => {
          render();
          focusLeaf(outputEl, path);
        },
      }));
    }
  }

  /**
   * One leaf edited in a tree: the whole value it belongs to is sent, rebuilt with the new leaf.
   * @param {"set_inputs" | "set_output"} verb
   * @param {import("./jsontree.js").Path} path
   * @param {unknown} value
   * @returns {Promise<string | null>}
   */
  async function saveLeaf(verb, path, value) {
    const sel = model.get("selected");
    const d = model.get("detail");
    if (!sel || !d) return "no instance selected";
    const json = verb === "set_inputs"
      ? JSON.stringify({ [String(path[0])]: setIn((d.inputs || {})[String(path[0])], path.slice(1), value) })
      : JSON.stringify(setIn(d.output, path, value));
    const answer = await actOn(verb, { step: sel.step, key: sel.key }, { json });
    return answer.ok ? null : answer.text || "refused";
  }

  // ---------------------------------------------------------------- skip: the dialog asks for the output
  /** @param {{step: string, key: Key} | null} [t]  the instance (default: the selected one) */
  function askSkip(t = target()) {
    if (!t) return;
    const sel = model.get("selected");
    const d = model.get("detail");
    const mine = sel && d && !d.missing && sel.step === t.step && (sel.key ?? null) === (t.key ?? null);
    const initial = mine && d.has_output && d.output_editable ? d.output : null;
    const out = h("textarea", { class: "nbf-editor-text nbf-dialog-json", testid: "skip-output", spellcheck: "false", rows: 4 });
    out.value = pretty(initial === undefined ? null : initial);
    const reason = h("input", { class: "nbf-input nbf-grow", testid: "skip-reason", placeholder: "recorded in the history" });
    ctx.dialog.open({
      title: `Skip ${label(t.step, t.key)}`,
      text: "Downstream steps receive the output given here in its place.",
      body: [field("Output (JSON)", out), field("Reason", reason)],
      confirm: "Skip",
      onConfirm: async () => {
        try {
          JSON.parse(out.value);
        } catch (e) {
          return `Invalid JSON: ${/** @type {Error} */ (e).message}`; // invalid JSON never leaves the browser
        }
        const answer = await actOn("skip", t, { json: out.value, reason: reason.value.trim() || null });
        return answer.ok ? true : answer.text || "refused";
      },
    });
  }

  // ---------------------------------------------------------------- debug in a cell
  /** Ask the kernel to bind the instance's inputs; its body goes in a new cell below the widget's
   * (the JupyterLab extension inserts it on the `nbflow:insert-cell` event), else in a dialog to copy. */
  async function debugInCell() {
    const t = target();
    if (!t) return;
    const answer = await ctx.act("debug_cell", t, slot);
    const cell = answer.ok ? answer.debug_cell : null;
    if (!cell || typeof cell.code !== "string") return;
    const ev = new CustomEvent("nbflow:insert-cell", { detail: { code: cell.code, target: cell.target }, bubbles: true, cancelable: true });
    ctx.root.dispatchEvent(ev);
    if (ev.defaultPrevented) return; // a new cell holds it
    const text = h("textarea", { class: "nbf-editor-text nbf-dialog-json", testid: "debug-code", spellcheck: "false", readonly: true, rows: Math.min(16, cell.code.split("\n").length + 1) });
    text.value = cell.code;
    ctx.dialog.open({
      title: `Debug ${cell.target || label(t.step, t.key)} in a cell`,
      text: `Its inputs are bound in the notebook${cell.bound && cell.bound.length ? ` (${cell.bound.join(", ")})` : ""}; paste this in a new cell and run it.`,
      body: [field("The step's body", text)],
      confirm: "Copy",
      onConfirm: async () => ((await copyText(text.value, text)) ? true : "could not copy: select the text and press Ctrl+C"),
    });
  }

  // ---------------------------------------------------------------- JSON editor
  /** @param {"set_inputs" | "set_output"} mode */
  function openEditor(mode) {
    const sel = model.get("selected");
    const d = model.get("detail");
    if (!sel || !d) return;
    let initial;
    if (mode === "set_inputs") {
      /** @type {Record<string, unknown>} */
      const editable = {};
      for (const [k, v] of Object.entries(d.inputs || {})) if (!(d.readonly_inputs || []).includes(k)) editable[k] = v;
      initial = editable;
      edTitle.textContent = `Edit the inputs of ${label(sel.step, sel.key)}`;
    } else {
      initial = d.output;
      edTitle.textContent = `Edit the output of ${label(sel.step, sel.key)}`;
    }
    ui.editor = { mode, step: sel.step, key: sel.key };
    edText.value = pretty(initial === undefined ? null : initial);
    edError.textContent = "";
    edReason.value = "";
    editor.hidden = false;
    edSave.disabled = false;
    edText.focus();
  }

  function validateEditor() {
    const text = edText.value;
    try {
      const value = JSON.parse(text);
      if (ui.editor && ui.editor.mode === "set_inputs" && (value === null || typeof value !== "object" || Array.isArray(value))) {
        throw new Error('the inputs must be a JSON object of input name to value, e.g. {"item": {...}}');
      }
      edError.textContent = "";
      edText.classList.remove("nbf-invalid");
      return { ok: true, value };
    } catch (e) {
      const msg = e instanceof SyntaxError ? `Invalid JSON: ${e.message}` : /** @type {Error} */ (e).message;
      edError.textContent = msg;
      edText.classList.add("nbf-invalid");
      return { ok: false, error: msg };
    }
  }

  function saveEditor() {
    if (!ui.editor) return;
    const v = validateEditor();
    if (!v.ok) return; // invalid JSON never leaves the browser
    const open = ui.editor;
    const { mode, step, key } = open;
    edSave.disabled = true;
    void ctx.act(mode, { step, key, json: edText.value, reason: edReason.value.trim() || null }, slot).then((answer) => {
      if (ui.editor !== open) return; // closed or replaced meanwhile
      if (answer.ok) closeEditor();
      else edSave.disabled = false;
    });
  }

  function closeEditor() {
    ui.editor = null;
    editor.hidden = true;
    edError.textContent = "";
    edText.classList.remove("nbf-invalid");
  }

  /** The next instance chosen by a person comes into view. */
  const reveal = () => (ui.reveal = true);
  /** Escape: the raw editor closes first, then the panel. */
  function escape() {
    if (ui.editor) {
      closeEditor();
      return true;
    }
    if (!model.get("selected")) return false;
    void ctx.send("close_instance");
    return true;
  }
  /** e: edit what the instance's state lets you edit (its output when paused after, else its inputs). */
  function editSelected() {
    const d = model.get("detail");
    const verbs = new Set((d && d.verbs) || []);
    if (verbs.has("set_output")) openEditor("set_output");
    else if (verbs.has("set_inputs")) openEditor("set_inputs");
    else return false;
    return true;
  }

  return { el: panel, render, reveal, escape, askSkip, editSelected, actOn, follow, followRows, slot };
}
