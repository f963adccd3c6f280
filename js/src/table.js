// The selected step's instances: a status and text filter (opening on "problems" when there are
// any), watch columns (an expression per column, evaluated in Python one page at a time), sortable
// headers, one page of rows, and the pager. A row's click opens the instance; its box ticks it into
// the controller's selection (`toggle`), which the bulk bar (bulk.js) acts on.
import { h } from "./dom.js";
import { STATUSES, compact, cut, fmt, plural, secs } from "./format.js";
import { notStarted, rowDetail } from "./describe.js";
import { usesText } from "./dag.js";
import { forkDialog } from "./bulk.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").Key} Key */
/** @typedef {import("./types.js").InstanceRow} InstanceRow */

/** @typedef {HTMLTableRowElement & {_box: HTMLInputElement, _changed: HTMLElement, _shape: string, _key: Key, _step: string}} RowEl  an instance row */

/** The statuses "problems" stands for (the controller's filter of the same name). */
export const PROBLEMS = ["paused", "failed", "waiting", "retrying"];

/**
 * The `filter` action's arguments: the page's filters as they are, with `change` applied (a filter
 * that is not named stays, so changing the status keeps the group and the watch filter).
 * @param {import("./types.js").InstancePage} p
 * @param {{status?: string, text?: string, group?: string, watch?: {index: number, text: string} | null}} change
 */
export function filterArgs(p, change) {
  const args = { status: p.status || "", text: p.text || "", group: p.group || "", watch: p.watch_filter || null, ...change };
  return args.watch ? args : { status: args.status, text: args.text, group: args.group };
}

/**
 * The logged-value columns: the step's logpoints' expressions, then any other expression a row of
 * the page logged (a logpoint since removed), each once.
 * @param {import("./types.js").DagNode | undefined} node
 * @param {InstanceRow[]} rows
 * @returns {string[]}
 */
export function loggedExpressions(node, rows) {
  /** @type {Set<string>} */
  const out = new Set();
  for (const b of (node && node.breakpoints) || []) if (b.action === "log" && b.expression) out.add(b.expression);
  for (const r of rows) for (const e of Object.keys(r.logged || {})) out.add(e);
  return [...out];
}

/**
 * @param {Ctx} ctx
 * @param {{reveal: () => void}} detail  the panel: an instance chosen here comes into view
 */
export function createTable(ctx, detail) {
  const { model } = ctx;
  const stepTitle = h("span", { class: "nbf-step-title" });
  const filterStatus = h("select", { class: "nbf-input", testid: "filter-status", "aria-label": "Status", onchange: () => sendFilter() });
  const filterText = h("input", { class: "nbf-input nbf-grow", testid: "filter-text", placeholder: "filter by key or error", type: "search", "aria-label": "Filter" });
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let filterTimer = undefined;
  filterText.addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(sendFilter, 300);
  });
  filterText.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      clearTimeout(filterTimer);
      sendFilter();
    }
  });
  function sendFilter() {
    ctx.send("filter", filterArgs(model.get("instances") || {}, { status: filterStatus.value, text: filterText.value }));
  }
  const groupChip = h("button", { class: "nbf-btn nbf-small nbf-chip", testid: "group-filter", hidden: true, title: "show every instance again", onclick: () => {
    ctx.send("filter", filterArgs(model.get("instances") || {}, { group: "" }));
  } });
  const errorsBtn = h("button", { class: "nbf-btn", testid: "errors", "aria-pressed": "false", title: "the step's failures grouped by cause", onclick: () => {
    ctx.send("show_errors", { on: !model.get("errors") });
  } }, "Errors");
  // watch columns: an expression over the instance (item, its inputs, output)
  const watchInput = h("input", { class: "nbf-input nbf-watch-input", testid: "watch-add", placeholder: 'item["amount"]', "aria-label": "Add column",
    title: "a watch column: an expression over the instance's inputs by name (item, …) or its output, e.g. len(item[\"tags\"]); Enter adds it" });
  watchInput.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || !watchInput.value.trim()) return;
    e.preventDefault();
    void ctx.act("watch_add", { expr: watchInput.value.trim() }, slot).then((a) => {
      if (a.ok) watchInput.value = "";
    });
  });
  const slot = h("div", { class: "nbf-msg-slot" });
  // a task's node: fork from it (a foreach forks its ticked items from the bulk bar)
  const forkStep = h("button", { class: "nbf-btn", testid: "fork-step", hidden: true, title: "a new run that re-runs this step and everything downstream, reusing every other output", onclick: () => {
    const step = model.get("selected_step");
    if (step) forkDialog(ctx, step, `step ${step}`, slot, false);
  } }, "Fork from here");
  const pageAll = h("input", { type: "checkbox", class: "nbf-check", "aria-label": "tick every row of this page", title: "tick every row of this page", onchange: () => {
    const rows = (model.get("instances") || {}).rows || [];
    void ctx.send("select", pageAll.checked ? { keys: rows.filter((r) => r.key != null).map((r) => r.key) } : {});
  } });
  const headRow = h("tr");
  const watchHead = h("tr", { class: "nbf-watch-head", hidden: true }); // a filter field under each watch column
  const tbody = h("tbody");
  const table = h("table", { class: "nbf-table", testid: "instances" }, h("thead", {}, headRow, watchHead), tbody);
  const pagePrev = h("button", { class: "nbf-btn nbf-small", testid: "page-prev", onclick: () => page(-1) }, "‹ Prev");
  const pageNext = h("button", { class: "nbf-btn nbf-small", testid: "page-next", onclick: () => page(1) }, "Next ›");
  /** @param {number} dir */
  function page(dir) {
    const p = model.get("instances");
    return ctx.send("page", { offset: Math.max((p.offset || 0) + dir * (p.limit || 20), 0) });
  }
  const pageInfo = h("span", { class: "nbf-page-info", testid: "page-info" });
  const instBox = h("div", { class: "nbf-instances-box", hidden: true },
    h("div", { class: "nbf-row nbf-filter-row" }, stepTitle, filterStatus, filterText, groupChip, errorsBtn, forkStep),
    slot);
  /** @type {HTMLElement} */
  let watchRow;
  const tableBox = h("div", { class: "nbf-table-box" },
    watchRow = h("div", { class: "nbf-row nbf-watch-row" }, h("label", { class: "nbf-field-inline" }, h("span", { class: "nbf-muted" }, "Add column"), watchInput)),
    h("div", { class: "nbf-table-wrap" }, table),
    h("div", { class: "nbf-pager" }, pagePrev, pageInfo, pageNext));
  const hint = h("div", { class: "nbf-hint" }, "Click a node of the graph to see its instances.");

  /**
   * A sortable header: click sorts by it, again reverses.
   * @param {string} by
   * @param {string} text
   * @param {string} cls
   * @param {string} [title]
   */
  function sortable(by, text, cls, title) {
    const p = model.get("instances") || {};
    const sort = p.sort || { by: "item", desc: false };
    const on = sort.by === by;
    const btn = h("button", { class: "nbf-sort", testid: `sort-${by}`, title: title || `sort by ${text}`, onclick: () => ctx.send("sort", { by, desc: on ? !sort.desc : by === "duration" }) },
      text, on ? (sort.desc ? " ▼" : " ▲") : "");
    return h("th", { class: cls, "aria-sort": on ? (sort.desc ? "descending" : "ascending") : "none" }, btn);
  }

  // ---------------------------------------------------------------- instances
  /** @type {Map<string, RowEl>} */
  let rowEls = new Map();
  let headSig = "";
  function renderInstances() {
    const step = model.get("selected_step");
    const p = model.get("instances") || {};
    const node = (model.get("dag").nodes || []).find((n) => n.step === step);
    hint.hidden = !!step;
    instBox.hidden = !step;
    tableBox.hidden = !step;
    if (!step) return;
    stepTitle.replaceChildren(h("b", {}, step), node ? h("span", { class: "nbf-muted" }, ` ${node.kind} · ${fmt(node.total)}`) : "",
      node && usesText(node) ? h("span", { class: "nbf-uses", testid: "step-uses", title: "not stored with the run's code: a resume in another process needs the notebook (nbflow resume RUN --notebook NB)" }, ` · ${usesText(node)}`) : "");
    // the status filter, with the node's counts; "problems" first when there are any
    const counts = node ? node.counts : {};
    const problems = PROBLEMS.reduce((n, st) => n + (counts[st] || 0), 0);
    const want = [
      ...(problems || p.status === "problems" ? [["problems", `problems (${fmt(problems)})`]] : []),
      ["", `all (${fmt(node ? node.total : 0)})`],
      ...STATUSES.filter((st) => counts[st] || st === p.status).map((st) => [st, `${st} (${fmt(counts[st] || 0)})`])];
    const sig = JSON.stringify(want);
    if (filterStatus.dataset.sig !== sig) {
      filterStatus.replaceChildren(...want.map(([v, t]) => h("option", { value: v }, t)));
      filterStatus.dataset.sig = sig;
    }
    filterStatus.value = p.status || "";
    if (document.activeElement !== filterText && filterText.value !== (p.text || "")) filterText.value = p.text || "";
    const errs = model.get("errors");
    const group = p.group ? ((errs && errs.groups) || []).find((g) => g.id === p.group) : null;
    groupChip.hidden = !p.group;
    groupChip.textContent = p.group ? `error group ${group ? `${group.type} × ${fmt(group.count)}` : p.group} ✕` : "";
    errorsBtn.setAttribute("aria-pressed", errs ? "true" : "false");
    errorsBtn.classList.toggle("nbf-on", !!errs);
    const failing = (counts.failed || 0) + (counts.paused || 0);
    errorsBtn.disabled = !errs && !failing;
    errorsBtn.title = errs ? "hide the error groups" : failing ? "the step's failures grouped by cause" : "nothing failed in this step";
    const past = ctx.past();
    forkStep.hidden = !node || node.kind === "foreach";
    forkStep.disabled = past;
    errorsBtn.disabled = errorsBtn.disabled || past; // error groups are of now

    const columns = p.columns || [];
    watchRow.hidden = !node || node.kind !== "foreach";
    const logs = loggedExpressions(node, p.rows || []);
    renderWatchFilters(p, columns, logs.length);
    const sortSig = JSON.stringify([columns, p.sort, logs]);
    if (sortSig !== headSig) {
      headSig = sortSig;
      headRow.replaceChildren(h("th", { class: "nbf-c-check" }, pageAll), sortable("item", "key", "nbf-c-key", "sort by key (the items' order)"),
        h("th", { class: "nbf-c-status" }, "status"), h("th", { class: "nbf-c-num", title: "attempts made" }, "att."),
        sortable("duration", "took", "nbf-c-num", "sort by how long the last attempt took"),
        ...columns.map((c, i) => {
          const th = sortable(`watch:${i}`, cut(c.expr, 28), "nbf-c-watch", `sort by ${c.expr}`);
          th.setAttribute("data-testid", "watch-column");
          th.append(h("button", { class: "nbf-btn nbf-small nbf-ghost nbf-watch-x", testid: "watch-remove", "aria-label": `remove column ${c.expr}`, title: `remove the column ${c.expr}`,
            onclick: () => ctx.send("watch_remove", { index: i }) }, "✕"));
          return th;
        }),
        ...logs.map((expr) => h("th", { class: "nbf-c-watch nbf-c-log", testid: "log-column", title: `what the logpoint ${expr} logged for each instance (its newest value)` }, `log: ${cut(expr, 28)}`)),
        h("th", { class: "nbf-c-detail" }, "detail"));
    }
    const sel = model.get("selected");
    const selection = model.get("selection") || { kind: "none", count: 0 };
    const bps = ctx.breakpointsById();
    const rows = p.rows || [];
    const ncols = 6 + columns.length + logs.length;
    /** @type {Map<string, RowEl>} */
    const next = new Map();
    const els = rows.map((r) => {
      const k = r.key == null ? "" : String(r.key);
      let tr = rowEls.get(k);
      if (!tr || tr._shape !== `${columns.length}/${logs.length}`) tr = makeRow(k, columns.length, logs.length);
      tr._key = r.key;
      tr._step = r.step;
      const [, keyTd, stTd, attTd, tookTd, ...rest] = /** @type {HTMLTableCellElement[]} */ ([...tr.children]);
      const detTd = /** @type {HTMLTableCellElement} */ (rest.pop());
      /** @type {ChildNode} */ (keyTd.firstChild).textContent = r.key == null ? "—" : String(r.key);
      keyTd.title = r.key == null ? "the step's single instance" : String(r.key);
      stTd.textContent = r.status;
      stTd.className = `nbf-c-status nbf-fg-${r.status}`;
      stTd.setAttribute("data-status", r.status);
      attTd.textContent = r.attempt ? String(r.attempt) : "–";
      attTd.title = r.attempt ? plural(r.attempt, "attempt") : notStarted(r.status, node && node.kind);
      attTd.classList.toggle("nbf-muted", !r.attempt);
      tookTd.textContent = r.duration_s != null ? secs(r.duration_s) : "";
      const logTds = rest.splice(columns.length);
      logTds.forEach((td, i) => {
        const has = !!r.logged && logs[i] in r.logged;
        const v = has ? /** @type {Record<string, unknown>} */ (r.logged)[logs[i]] : undefined;
        td.textContent = has ? compact(v, 40) : "";
        td.title = has ? compact(v, 2000) : "nothing logged for it";
      });
      tr._changed.hidden = !r.code_changed;
      rest.forEach((td, i) => {
        const cell = (r.watch || [])[i];
        td.textContent = cell ? (cell.error ? "⚠" : cell.text) : "";
        td.title = cell ? cell.error || cell.text : "";
        td.classList.toggle("nbf-fg-failed", !!(cell && cell.error));
      });
      detTd.textContent = rowDetail(r, bps);
      detTd.title = detTd.textContent;
      detTd.classList.toggle("nbf-fg-failed", r.status === "failed" || (r.status === "paused" && !!r.pause && r.pause.when === "error"));
      tr._box.checked = ticked(r, selection, p);
      tr._box.disabled = r.key == null;
      tr.classList.toggle("nbf-current", !!sel && sel.step === r.step && (sel.key ?? null) === (r.key ?? null));
      next.set(k, tr);
      return tr;
    });
    rowEls = next;
    // the same rows in the same order stay in place (a row with the focus keeps it)
    const same = els.length === tbody.children.length && els.every((tr, i) => tbody.children[i] === tr);
    if (els.length) {
      if (!same) tbody.replaceChildren(...els);
    } else tbody.replaceChildren(h("tr", { class: "nbf-empty" }, h("td", { colspan: ncols }, p.total === 0 && (p.status || p.text || p.group || p.watch_filter) ? "no instance matches the filter" : "no instances yet")));
    const total = p.total || 0;
    const offset = p.offset || 0;
    pageInfo.textContent = total ? `${fmt(offset + 1)}–${fmt(offset + rows.length)} of ${fmt(total)}` : "0 of 0";
    pagePrev.disabled = offset <= 0;
    pageNext.disabled = offset + (p.limit || 20) >= total;
    pageAll.checked = rows.length > 0 && rows.every((r) => r.key == null || ticked(r, selection, p));
    if (focusAfter && els.length && focusAfter.offset === offset) {
      (focusAfter.where === "first" ? els[0] : els[els.length - 1]).focus();
      focusAfter = null;
    }
  }

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let watchTimer = undefined;
  /**
   * Under each watch column, a field that keeps the rows whose value's text holds what is typed
   * (one watch filter at a time: typing in one column's field empties the others).
   * @param {import("./types.js").InstancePage} p
   * @param {{expr: string}[]} columns
   * @param {number} nlog  the logged-value columns after them
   */
  function renderWatchFilters(p, columns, nlog) {
    watchHead.hidden = !columns.length;
    const wf = p.watch_filter || null;
    const sig = JSON.stringify([columns, nlog]);
    if (watchHead.dataset.sig !== sig) {
      watchHead.dataset.sig = sig;
      watchHead.replaceChildren(h("th", { colspan: 5 }), ...columns.map((c, i) => {
        const input = h("input", { class: "nbf-input nbf-watch-filter", type: "search", testid: "watch-filter", placeholder: "filter", "aria-label": `filter ${c.expr}`,
          title: `keep the rows whose ${c.expr} holds this text` });
        input.addEventListener("input", () => {
          clearTimeout(watchTimer);
          watchTimer = setTimeout(() => {
            const text = input.value.trim();
            ctx.send("filter", filterArgs(model.get("instances") || {}, { watch: text ? { index: i, text } : null }));
          }, 300);
        });
        ctx.stop(input);
        return h("th", { class: "nbf-c-watch" }, input);
      }), h("th", { colspan: 1 + nlog }));
    }
    watchHead.querySelectorAll("input").forEach((input, i) => {
      if (document.activeElement === input) return;
      input.value = wf && wf.index === i ? wf.text : "";
    });
  }

  /**
   * Whether a row is in the selection the bulk verbs act on.
   * @param {InstanceRow} r
   * @param {import("./types.js").Selection} s
   * @param {import("./types.js").InstancePage} p
   */
  function ticked(r, s, p) {
    if (s.kind === "keys") return (s.keys || []).some((k) => String(k) === String(r.key));
    if (s.kind === "filter") return true; // every row shown matches the filter
    if (s.kind === "group") return !!p.group && p.group === s.group;
    return false;
  }

  /**
   * @param {string} k
   * @param {number} nwatch  watch columns
   * @param {number} nlog  logged-value columns
   */
  function makeRow(k, nwatch, nlog) {
    const changed = h("span", { class: "nbf-tag nbf-tag-changed", testid: "code-changed", hidden: true, title: "its step's code changed after its last attempt started: a retry or a resume runs the new code (the diff is in its panel)" }, "code changed");
    const box = h("input", { type: "checkbox", class: "nbf-check", testid: "select", "aria-label": `tick ${k}`, onclick: (ev) => ev.stopPropagation(), onchange: () => {
      void ctx.send("toggle", { key: row._key });
    } });
    const row = /** @type {RowEl} */ (h("tr", { testid: "instance-row", "data-key": k, class: "nbf-inst-row", tabindex: 0 },
      h("td", { class: "nbf-c-check" }, box), h("td", { class: "nbf-c-key" }, h("span", { class: "nbf-key-text" }), changed), h("td", { testid: "row-status" }),
      h("td", { class: "nbf-c-num" }), h("td", { class: "nbf-c-num nbf-c-took", testid: "row-took" }),
      ...Array.from({ length: nwatch }, () => h("td", { class: "nbf-c-watch", testid: "watch-cell" })),
      ...Array.from({ length: nlog }, () => h("td", { class: "nbf-c-watch nbf-c-log", testid: "log-cell" })), h("td", { class: "nbf-c-detail" })));
    row._box = box;
    row._changed = changed;
    row._shape = `${nwatch}/${nlog}`;
    row.addEventListener("click", () => open(row));
    row.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.target === row) open(row);
    });
    return row;
  }

  /** @param {RowEl} row */
  function open(row) {
    detail.reveal();
    void ctx.send("select_instance", { step: row._step, key: row._key });
  }

  /** Mark the row of the selected instance. */
  function markCurrent() {
    const sel = model.get("selected");
    for (const tr of rowEls.values()) tr.classList.toggle("nbf-current", !!sel && sel.step === tr._step && (sel.key ?? null) === (tr._key ?? null));
  }

  // ---------------------------------------------------------------- keyboard (widget.js)
  /** The row that has the focus, else the selected instance's row. */
  function focusedRow() {
    const a = document.activeElement;
    const tr = a instanceof HTMLElement ? a.closest("tr[data-testid=instance-row]") : null;
    if (tr && tbody.contains(tr)) return /** @type {RowEl} */ (tr);
    const cur = tbody.querySelector("tr.nbf-current");
    return cur ? /** @type {RowEl} */ (cur) : null;
  }
  /** @type {{where: "first" | "last", offset: number} | null} where the focus goes once the page asked for arrives */
  let focusAfter = null;
  /** j/k: the focus moves to the next or previous row (the first one when none has it); past the
   * last row of a page, to the first of the next page (and back).
   * @param {number} delta */
  function move(delta) {
    const rows = /** @type {RowEl[]} */ ([...tbody.querySelectorAll("tr[data-testid=instance-row]")]);
    if (!rows.length) return false;
    const at = rows.indexOf(/** @type {RowEl} */ (focusedRow()));
    const to = at < 0 ? (delta > 0 ? 0 : rows.length - 1) : at + delta;
    const pager = delta > 0 ? pageNext : pagePrev;
    if ((to >= rows.length || to < 0) && !pager.disabled) {
      const p = model.get("instances") || {};
      focusAfter = { where: delta > 0 ? "first" : "last", offset: Math.max((p.offset || 0) + (delta > 0 ? 1 : -1) * (p.limit || 20), 0) };
      void page(delta > 0 ? 1 : -1);
      return true;
    }
    rows[Math.min(Math.max(to, 0), rows.length - 1)].focus();
    return true;
  }
  /** The instance the focused row stands for. */
  function focusedTarget() {
    const tr = focusedRow();
    return tr ? { step: tr._step, key: tr._key } : null;
  }
  /** x: tick or untick the focused row. */
  function tickFocused() {
    const tr = focusedRow();
    if (!tr || tr._key == null) return false;
    void ctx.send("toggle", { key: tr._key });
    return true;
  }
  /** Enter: open the focused row. */
  function openFocused() {
    const tr = focusedRow();
    if (!tr) return false;
    open(tr);
    return true;
  }

  for (const elem of [filterText, watchInput]) ctx.stop(elem);
  return { el: instBox, tableEl: tableBox, hint, render: renderInstances, markCurrent, move, focusedTarget, tickFocused, openFocused,
    dispose: () => {
      clearTimeout(filterTimer);
      clearTimeout(watchTimer);
    } };
}
