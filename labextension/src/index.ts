// nbflow's JupyterLab extension: a left sidebar "Workflow runs" listing every run in the server's
// store (polled every ~2 s while visible), and, for a clicked run, a main-area panel with the
// notebook widget's debugger view (js/src/widget.js) over a REST-backed model (model.ts). In a
// notebook, the widget's "Debug in a cell" asks for a new cell with the `nbflow:insert-cell` event:
// it goes below the cell whose output holds the widget (insertCellBelow).
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { MainAreaWidget } from "@jupyterlab/apputils";
import { INotebookTracker } from "@jupyterlab/notebook";
import { Widget } from "@lumino/widgets";

import { Api, ApiError, RunSummary } from "./api";
import { RestRunModel } from "./model";
// the notebook widget's view, bundled from its source (one view for notebook and sidebar)
// @ts-ignore: a plain ES module without types
import widgetView from "../../js/src/widget.js";

const LIST_POLL_MS = 2000;
const TERMINAL = ["succeeded", "failed", "cancelled"];

function h(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

function ago(iso: string | null): string {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** The main-area panel of one run: the widget's view plus a "Resume here" bar for an orphaned run. */
class RunPanel extends Widget {
  readonly model: RestRunModel;
  private cleanup: (() => void) | void = undefined;
  private bar: HTMLElement;
  private barText: HTMLElement;
  private takeover: HTMLButtonElement;

  constructor(
    readonly api: Api,
    readonly runId: string,
  ) {
    super();
    this.id = `nbflow-run-${runId}`;
    this.addClass("nbflow-lab-run");
    this.node.setAttribute("data-run-id", runId);
    this.title.label = `run ${runId}`;
    this.title.closable = true;
    this.barText = h("span", { class: "nbflow-lab-takeover-text" });
    this.takeover = h("button", { class: "nbflow-lab-btn", "data-testid": "resume-here", title: "take the run over in a worker process started by the Jupyter server; the view follows it live" }, "Resume here") as HTMLButtonElement;
    this.takeover.addEventListener("click", () => void this.resumeHere());
    this.bar = h("div", { class: "nbflow-lab-takeover", "data-testid": "takeover-bar", hidden: "" }, this.barText, this.takeover);
    const host = h("div", { class: "nbflow-lab-view" });
    this.node.append(this.bar, host);
    this.model = new RestRunModel(api, runId);
    this.model.onRefresh = (summary) => this.onSummary(summary);
    void this.model.start().then(() => {
      if (!this.isDisposed) {
        const invoke = (name: string, msg: unknown) => this.model.invoke(name, msg);
        this.cleanup = widgetView.render({ model: this.model, el: host, experimental: { invoke } });
      }
    });
  }

  private onSummary(summary: any): void {
    this.title.label = `${summary.workflow || "run"} ${this.runId}`;
    this.title.caption = `run ${this.runId} of ${summary.workflow}: ${summary.status}`;
    const orphan = !!summary.interrupted && !TERMINAL.includes(summary.status);
    if (orphan) {
      if (this.bar.hidden) this.barText.textContent = "No live process drives this run. Commands are queued until it is resumed.";
      this.bar.hidden = false;
    } else if (!this.takeover.disabled || TERMINAL.includes(summary.status)) {
      this.bar.hidden = true;
    }
  }

  private async resumeHere(): Promise<void> {
    this.takeover.disabled = true;
    this.barText.textContent = "starting a worker…";
    try {
      const res = await this.api.post(`runs/${encodeURIComponent(this.runId)}/takeover`, {});
      this.barText.textContent = res.state === "started" ? `taken over by worker pid ${res.pid}` : `worker pid ${res.pid} is starting…`;
      this.bar.hidden = true;
    } catch (e) {
      this.barText.textContent = `Resume here failed: ${(e as Error).message}`;
      this.barText.classList.add("error");
    } finally {
      this.takeover.disabled = false;
      await this.model.refresh();
    }
  }

  protected onAfterShow(): void {
    this.model.visible = true;
    void this.model.refresh();
  }

  protected onAfterHide(): void {
    this.model.visible = false;
  }

  dispose(): void {
    if (this.isDisposed) return;
    if (this.cleanup) this.cleanup();
    this.model.dispose();
    super.dispose();
  }
}

/** The left sidebar: every run in the store, newest first. */
class RunsSidebar extends Widget {
  private list: HTMLElement;
  private status: HTMLElement;
  private timer: number | null = null;
  private busy = false;

  constructor(
    readonly api: Api,
    readonly open: (run: RunSummary) => void,
  ) {
    super();
    this.id = "nbflow-runs";
    this.addClass("nbflow-lab-sidebar");
    this.title.caption = "Workflow runs";
    this.title.label = "Runs";
    const refresh = h("button", { class: "nbflow-lab-btn nbflow-lab-small", title: "refresh now", "data-testid": "runs-refresh" }, "⟳");
    refresh.addEventListener("click", () => void this.load());
    this.status = h("div", { class: "nbflow-lab-status", "data-testid": "runs-status" });
    this.list = h("ul", { class: "nbflow-lab-runs", "data-testid": "runs" });
    this.node.append(h("div", { class: "nbflow-lab-head" }, h("h2", {}, "Workflow runs"), refresh), this.status, this.list);
  }

  protected onAfterShow(): void {
    void this.load();
    this.tick();
  }

  protected onAfterHide(): void {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
  }

  private tick(): void {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => {
      this.timer = null;
      if (!this.isVisible) return;
      void this.load().finally(() => this.tick());
    }, LIST_POLL_MS);
  }

  async load(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const runs = await this.api.runs();
      this.render(runs);
      this.status.textContent = runs.length ? "" : "No runs in this server's store yet.";
      this.status.classList.remove("error");
    } catch (e) {
      const msg = e instanceof ApiError && e.status === 404 ? "the nbflow server extension is not enabled" : (e as Error).message;
      this.status.textContent = `Cannot list runs: ${msg}`;
      this.status.classList.add("error");
    } finally {
      this.busy = false;
    }
  }

  private render(runs: RunSummary[]): void {
    const rows = runs.map((r) => {
      const badge = h("span", { class: `nbflow-lab-badge s-${r.status}`, "data-testid": "run-status" }, r.status.toUpperCase());
      const bits: (Node | string)[] = [];
      if (r.paused) bits.push(h("span", { class: "nbflow-lab-paused", "data-testid": "run-paused" }, `${r.paused} paused`));
      if (r.failed) bits.push(h("span", { class: "nbflow-lab-failed" }, `${r.failed} failed`));
      bits.push(h("span", {}, `${r.progress.done}/${r.progress.total}`));
      if (!TERMINAL.includes(r.status)) {
        bits.push(
          r.owner.alive
            ? h("span", { class: "nbflow-lab-owner alive", "data-testid": "run-owner", title: r.owner.text }, "● live")
            : h("span", { class: "nbflow-lab-owner gone", "data-testid": "run-owner", title: r.owner.text }, "interrupted"),
        );
      }
      const li = h(
        "li",
        { class: "nbflow-lab-run-row", "data-testid": "run-row", "data-run-id": r.id, "data-status": r.status, tabindex: "0", title: `open run ${r.id}` },
        h("div", { class: "nbflow-lab-line1" }, h("span", { class: "nbflow-lab-wf" }, r.workflow), badge),
        h("div", { class: "nbflow-lab-line2" }, h("code", {}, r.id), h("span", { class: "nbflow-lab-when" }, ago(r.updated || r.created))),
        h("div", { class: "nbflow-lab-line3" }, ...bits),
      );
      li.addEventListener("click", () => this.open(r));
      li.addEventListener("keydown", (ev) => {
        if ((ev as KeyboardEvent).key === "Enter") this.open(r);
      });
      return li;
    });
    this.list.replaceChildren(...rows);
  }
}

/**
 * The `nbflow:insert-cell` event of the widget's view ("Debug in a cell"): a code cell holding
 * `detail.code` goes below the notebook cell that holds the event's target, and becomes the active
 * one, scrolled into view. An event from outside any tracked notebook is left alone (the view then shows the code to copy).
 */
export function insertCellBelow(tracker: INotebookTracker, ev: Event): boolean {
  const detail = (ev as CustomEvent<{ code?: unknown }>).detail;
  const target = ev.target;
  if (!detail || typeof detail.code !== "string" || !(target instanceof Node)) return false;
  const panel = tracker.find((p) => p.node.contains(target));
  const notebook = panel && panel.content;
  if (!notebook || !notebook.model) return false;
  const at = notebook.widgets.findIndex((cell) => cell.node.contains(target));
  if (at < 0) return false;
  notebook.model.sharedModel.insertCell(at + 1, { cell_type: "code", source: detail.code });
  notebook.activeCellIndex = at + 1;
  const cell = notebook.widgets[at + 1];
  if (cell) void notebook.scrollToCell(cell, "smart"); // the view above may be taller than the window
  ev.preventDefault();
  return true;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: "nbflow-labextension:plugin",
  description: "nbflow: the Workflow runs sidebar and the run debugger panel",
  autoStart: true,
  optional: [ILabShell, INotebookTracker],
  activate: (app: JupyterFrontEnd, _shell: ILabShell | null, tracker: INotebookTracker | null) => {
    if (tracker) document.addEventListener("nbflow:insert-cell", (ev) => void insertCellBelow(tracker, ev));
    const api = new Api(app.serviceManager.serverSettings);
    const panels = new Map<string, MainAreaWidget<RunPanel>>();
    const openRun = (runId: string): void => {
      const have = panels.get(runId);
      if (have && !have.isDisposed) {
        app.shell.activateById(have.id);
        return;
      }
      const content = new RunPanel(api, runId);
      const panel = new MainAreaWidget({ content });
      panel.id = `nbflow-run-panel-${runId}`;
      panel.title.label = `run ${runId}`;
      panel.title.closable = true;
      content.title.changed.connect(() => {
        panel.title.label = content.title.label;
        panel.title.caption = content.title.caption;
      });
      panels.set(runId, panel);
      panel.disposed.connect(() => panels.delete(runId));
      app.shell.add(panel, "main");
      app.shell.activateById(panel.id);
    };
    app.commands.addCommand("nbflow:open-run", {
      label: "Open nbflow run",
      execute: (args) => openRun(String(args.id)),
    });
    const sidebar = new RunsSidebar(api, (r) => openRun(r.id));
    sidebar.title.iconClass = "nbflow-lab-icon";
    app.shell.add(sidebar, "left", { rank: 700 });
  },
};

export default plugin;
