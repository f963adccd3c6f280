// The selected step's instances: a status and text filter, one page of rows (ticked rows can be
// resumed together), and the pager. A row's click selects the instance.
import { h } from "./dom.js";
import { STATUSES, fmt, plural } from "./format.js";
import { notStarted, pauseWhen, rowDetail } from "./describe.js";
import { usesText } from "./dag.js";

/** @typedef {import("./types.js").Ctx} Ctx */
/** @typedef {import("./types.js").Key} Key */

/** @typedef {HTMLTableRowElement & {_box: HTMLInputElement, _key: Key, _step: string}} RowEl  an instance row */

/** @param {Ctx} ctx */
export function createTable(ctx) {
  const { model } = ctx;
  /** @type {{selectedKeys: Set<Key>, keysStep: string | null}} the ticked rows (of keysStep) */
  const ui = { selectedKeys: new Set(), keysStep: null };
  const stepTitle = h("span", { class: "nbf-step-title" });
  const filterStatus = h("select", { class: "nbf-input", testid: "filter-status", onchange: () => sendFilter() });
  const filterText = h("input", { class: "nbf-input nbf-grow", testid: "filter-text", placeholder: "filter by key or error", type: "search" });
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
    ctx.send("filter", { status: filterStatus.value, text: filterText.value });
  }
  const slot = h("div", { class: "nbf-msg-slot" });
  const resumeSelected = h("button", { class: "nbf-btn", testid: "resume-selected", onclick: () => {
    const step = model.get("selected_step");
    ctx.placeMessage(slot);
    if (!step || !ui.selectedKeys.size) return ctx.showMessage({ ok: false, text: "no instance selected: tick the rows to resume" });
    const asked = ui.keysStep;
    void ctx.act("resume", { step, keys: [...ui.selectedKeys] }, slot).then((answer) => {
      if (answer.ok && ui.keysStep === asked) {
        ui.selectedKeys.clear(); // what was resumed is no longer ticked
        renderInstances();
      }
    });
  } }, "Resume selected");
  const pageAll = h("input", { type: "checkbox", class: "nbf-check", title: "select every row of this page", onchange: () => {
    for (const r of model.get("instances").rows || []) {
      if (pageAll.checked) ui.selectedKeys.add(r.key);
      else ui.selectedKeys.delete(r.key);
    }
    renderInstances();
  } });
  const tbody = h("tbody");
  const table = h("table", { class: "nbf-table", testid: "instances" },
    h("thead", {}, h("tr", {}, h("th", { class: "nbf-c-check" }, pageAll), h("th", { class: "nbf-c-key" }, "key"), h("th", { class: "nbf-c-status" }, "status"),
      h("th", { class: "nbf-c-num", title: "attempts made" }, "att."), h("th", { class: "nbf-c-detail" }, "detail"))),
    tbody);
  const pagePrev = h("button", { class: "nbf-btn nbf-small", testid: "page-prev", onclick: () => {
    const p = model.get("instances");
    ctx.send("page", { offset: Math.max((p.offset || 0) - (p.limit || 20), 0) });
  } }, "‹ Prev");
  const pageNext = h("button", { class: "nbf-btn nbf-small", testid: "page-next", onclick: () => {
    const p = model.get("instances");
    ctx.send("page", { offset: (p.offset || 0) + (p.limit || 20) });
  } }, "Next ›");
  const pageInfo = h("span", { class: "nbf-page-info", testid: "page-info" });
  const instBox = h("div", { class: "nbf-instances-box", hidden: true },
    h("div", { class: "nbf-row nbf-filter-row" }, stepTitle, filterStatus, filterText, resumeSelected),
    slot,
    h("div", { class: "nbf-table-wrap" }, table),
    h("div", { class: "nbf-pager" }, pagePrev, pageInfo, pageNext));
  const hint = h("div", { class: "nbf-hint" }, "Click a node of the graph to see its instances.");
  // ---------------------------------------------------------------- instances
  /** @type {Map<string, RowEl>} */
  let rowEls = new Map();
  function renderInstances() {
    const step = model.get("selected_step");
    const p = model.get("instances") || {};
    const node = (model.get("dag").nodes || []).find((n) => n.step === step);
    hint.hidden = !!step;
    instBox.hidden = !step;
    if (!step) return;
    if (ui.keysStep !== step) {
      ui.selectedKeys.clear();
      ui.keysStep = step;
    }
    stepTitle.replaceChildren(h("b", {}, step), node ? h("span", { class: "nbf-muted" }, ` ${node.kind} · ${fmt(node.total)}`) : "",
      node && usesText(node) ? h("span", { class: "nbf-uses", testid: "step-uses", title: "not stored with the run's code: a resume in another process needs the notebook (nbflow resume RUN --notebook NB)" }, ` · ${usesText(node)}`) : "");
    // the status filter, with the node's counts
    const counts = node ? node.counts : {};
    const want = [["", `all (${fmt(node ? node.total : 0)})`], ...STATUSES.filter((st) => counts[st] || st === p.status).map((st) => [st, `${st} (${fmt(counts[st] || 0)})`])];
    const sig = JSON.stringify(want);
    if (filterStatus.dataset.sig !== sig) {
      filterStatus.replaceChildren(...want.map(([v, t]) => h("option", { value: v }, t)));
      filterStatus.dataset.sig = sig;
    }
    filterStatus.value = p.status || "";
    if (document.activeElement !== filterText && filterText.value !== (p.text || "")) filterText.value = p.text || "";
    const sel = model.get("selected");
    const bps = ctx.breakpointsById();
    const rows = p.rows || [];
    /** @type {Map<string, RowEl>} */
    const next = new Map();
    const els = rows.map((r) => {
      const k = r.key == null ? "" : String(r.key);
      let tr = rowEls.get(k);
      if (!tr) {
        const box = h("input", { type: "checkbox", class: "nbf-check", testid: "select", onclick: (ev) => ev.stopPropagation(), onchange: () => {
          if (box.checked) ui.selectedKeys.add(row._key);
          else ui.selectedKeys.delete(row._key);
          updateSelectedCount();
        } });
        const row = /** @type {RowEl} */ (h("tr", { testid: "instance-row", "data-key": k, class: "nbf-inst-row", tabindex: 0 },
          h("td", { class: "nbf-c-check" }, box), h("td", { class: "nbf-c-key" }, h("span", { class: "nbf-key-text" })), h("td", { testid: "row-status" }), h("td", { class: "nbf-c-num" }), h("td", { class: "nbf-c-detail" })));
        row._box = box;
        row.addEventListener("click", () => ctx.send("select_instance", { step: row._step, key: row._key }));
        row.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter") ctx.send("select_instance", { step: row._step, key: row._key });
        });
        tr = row;
      }
      tr._key = r.key;
      tr._step = r.step;
      const [, keyTd, stTd, attTd, detTd] = /** @type {HTMLCollectionOf<HTMLTableCellElement>} */ (tr.children);
      /** @type {ChildNode} */ (keyTd.firstChild).textContent = r.key == null ? "—" : String(r.key);
      keyTd.title = r.key == null ? "the step's single instance" : String(r.key);
      stTd.textContent = r.status;
      stTd.className = `nbf-c-status nbf-fg-${r.status}`;
      stTd.setAttribute("data-status", r.status);
      attTd.textContent = r.attempt ? String(r.attempt) : "–";
      attTd.title = r.attempt ? plural(r.attempt, "attempt") : notStarted(r.status, node && node.kind);
      attTd.classList.toggle("nbf-muted", !r.attempt);
      detTd.textContent = rowDetail(r, bps);
      detTd.title = detTd.textContent;
      detTd.classList.toggle("nbf-fg-failed", r.status === "failed" || (r.status === "paused" && pauseWhen(r.pause) === "error"));
      tr._box.checked = ui.selectedKeys.has(r.key);
      tr._box.disabled = r.key == null;
      tr.classList.toggle("nbf-current", !!sel && sel.step === r.step && (sel.key ?? null) === (r.key ?? null));
      next.set(k, tr);
      return tr;
    });
    rowEls = next;
    if (els.length) tbody.replaceChildren(...els);
    else tbody.replaceChildren(h("tr", { class: "nbf-empty" }, h("td", { colspan: 5 }, p.total === 0 && (p.status || p.text) ? "no instance matches the filter" : "no instances yet")));
    const total = p.total || 0;
    const offset = p.offset || 0;
    pageInfo.textContent = total ? `${fmt(offset + 1)}–${fmt(offset + rows.length)} of ${fmt(total)}` : "0 of 0";
    pagePrev.disabled = offset <= 0;
    pageNext.disabled = offset + (p.limit || 20) >= total;
    pageAll.checked = rows.length > 0 && rows.every((r) => ui.selectedKeys.has(r.key));
    updateSelectedCount();
  }

  function updateSelectedCount() {
    const n = ui.selectedKeys.size;
    resumeSelected.textContent = n ? `Resume selected (${n})` : "Resume selected";
    resumeSelected.disabled = !n;
  }

  /** Mark the row of the selected instance. */
  function markCurrent() {
    const sel = model.get("selected");
    for (const tr of rowEls.values()) tr.classList.toggle("nbf-current", !!sel && sel.step === tr._step && (sel.key ?? null) === (tr._key ?? null));
  }

  for (const elem of [filterText]) ctx.stop(elem);
  return { el: instBox, hint, render: renderInstances, markCurrent, dispose: () => clearTimeout(filterTimer) };
}
