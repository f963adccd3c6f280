// A model for the notebook widget's view (js/src/widget.js) backed by the REST API instead of a
// kernel: it implements the small part of anywidget's model API the view uses (get, set, on/off
// "change:NAME" and "msg:custom", send, save_changes) and computes the same traits as
// nbflow/notebook/widget.py's RunWidget (summary, dag, selected_step, instances, selected, detail,
// message, live). Navigation messages change what is read; actions become POST commands.
import { Api, ApiError, Json, query } from "./api";

const TERMINAL = ["succeeded", "failed", "cancelled"];
const NODE_ORDER = ["paused", "failed", "waiting", "running", "retrying", "ready", "pending"];
const NODE_ALIAS: Record<string, string> = { retrying: "running", ready: "running" };
const STATUSES = ["pending", "ready", "running", "retrying", "paused", "waiting", "succeeded", "failed", "skipped", "cancelled"];
export const PAGE_SIZE = 20;
export const POLL_MS = 1000;
const IDLE_POLL_MS = 5000; // a finished run: look now and then (a fork or a re-read changes nothing)

type Listener = (...args: Json[]) => void;

/** nbflow.notebook.render.node_status: one status for a DAG node from its per-status counts. */
export function nodeStatus(counts: Record<string, number>): string {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  if (!total) return "pending";
  for (const s of NODE_ORDER) if (counts[s]) return NODE_ALIAS[s] || s;
  for (const s of ["succeeded", "skipped"]) if (counts[s]) return s;
  return "cancelled";
}

function same(a: Json, b: Json): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

function keyText(key: Json): string | null {
  return key === null || key === undefined ? null : String(key);
}

function parseJson(text: Json, what: string): Json {
  if (typeof text !== "string") throw new Error(`${what} must be JSON text`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`invalid JSON: ${(e as Error).message}; nothing was changed`);
  }
}

function reasonOf(m: Json): string | null {
  const r = m.reason;
  return r === null || r === undefined ? null : String(r).trim().slice(0, 2000) || null;
}

/** The debugger state of one run, read through the REST API, in the shape the widget's view expects. */
export class RestRunModel {
  private values: Record<string, Json> = {};
  private listeners = new Map<string, Set<Listener>>();
  private step: string | null = null;
  private sel: { step: string; key: string | null } | null = null;
  private offset = 0;
  private filterStatus = "";
  private filterText = "";
  private seq = 0;
  private timer: number | null = null;
  private busy: Promise<void> | null = null;
  private again = false;
  private disposed = false;
  private firstDone = false;
  /** Called after every refresh (the panel uses it for its title). */
  onRefresh: ((summary: Json) => void) | null = null;
  /** False while the panel is hidden: polling pauses. */
  visible = true;

  constructor(
    readonly api: Api,
    readonly runId: string,
  ) {
    this.values = {
      run_id: runId,
      summary: { id: runId, status: "", progress: { done: 0, total: 0 }, counts: {}, owner: {}, params: {} },
      dag: { nodes: [], edges: [] },
      selected_step: null,
      instances: {},
      selected: null,
      detail: null,
      message: {},
      live: false,
    };
  }

  // -- the anywidget model API the view uses ---------------------------------------------------------
  get(name: string): Json {
    return this.values[name];
  }

  set(name: string, value: Json): void {
    if (same(this.values[name], value)) return;
    this.values[name] = value;
    this.emit(`change:${name}`, value);
  }

  on(event: string, fn: Listener): void {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event)!.add(fn);
  }

  off(event?: string, fn?: Listener): void {
    if (event === undefined) this.listeners.clear();
    else if (fn === undefined) this.listeners.delete(event);
    else this.listeners.get(event)?.delete(fn);
  }

  save_changes(): void {
    // state lives in the store: nothing to sync back
  }

  send(content: Json): void {
    void this.handle(content);
  }

  private emit(event: string, ...args: Json[]): void {
    for (const fn of [...(this.listeners.get(event) || [])]) {
      try {
        fn(...args);
      } catch (e) {
        console.error("nbflow: a view listener failed", e);
      }
    }
  }

  // -- live updates ---------------------------------------------------------------------------------
  /** Start polling (the first read happens at once). */
  start(): Promise<void> {
    return this.refresh().finally(() => this.schedule());
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
    this.listeners.clear();
  }

  private schedule(): void {
    if (this.disposed) return;
    const terminal = TERMINAL.includes((this.values.summary || {}).status);
    this.timer = window.setTimeout(
      () => {
        this.timer = null;
        const go = this.visible ? this.refresh() : Promise.resolve();
        void go.finally(() => this.schedule());
      },
      terminal ? IDLE_POLL_MS : POLL_MS,
    );
  }

  /** Read the store (one run state, one page, one instance) and set every trait that changed. */
  refresh(): Promise<void> {
    if (this.busy) {
      this.again = true; // coalesce: one more read after the one in flight
      return this.busy;
    }
    this.busy = (async () => {
      try {
        do {
          this.again = false;
          await this.read();
        } while (this.again && !this.disposed);
      } catch (e) {
        if (!this.disposed) this.say(false, `cannot read run ${this.runId}: ${(e as Error).message}`, "refresh");
      } finally {
        this.busy = null;
      }
    })();
    return this.busy;
  }

  private async read(): Promise<void> {
    const state = await this.api.get(`runs/${encodeURIComponent(this.runId)}?light=1`);
    if (this.disposed) return;
    const bps: Record<string, Json[]> = {};
    for (const b of state.breakpoints || []) {
      (bps[b.step] = bps[b.step] || []).push({
        id: b.id, key: b.key, when: b.when, condition: b.condition, scope: b.scope, state: b.state, held: b.held,
      });
    }
    const nodes = (state.dag.nodes as Json[]).map((n) => ({ ...n, status: nodeStatus(n.counts), breakpoints: bps[n.step] || [] }));
    if (!this.firstDone) {
      this.firstDone = true;
      if (this.step === null) {
        const first = nodes.find((n) => n.counts.paused || n.counts.failed || n.counts.waiting);
        if (first) this.selectStep(first.step, nodes);
      }
    }
    if (this.step !== null && !nodes.some((n) => n.step === this.step)) {
      this.step = null;
      this.sel = null;
    }
    const summary: Json = {};
    for (const k of ["id", "workflow", "version", "status", "interrupted", "owner", "progress", "counts", "break_on_error", "created", "updated", "finished", "forked_from", "params"]) {
      summary[k] = state[k];
    }
    let page: Json = {};
    if (this.step !== null) {
      page = await this.api.get(
        `runs/${encodeURIComponent(this.runId)}/instances?` +
          query({ step: this.step, status: this.filterStatus, text: this.filterText, offset: this.offset, limit: PAGE_SIZE }),
      );
      this.offset = page.offset;
      page = { ...page, status: this.filterStatus, text: this.filterText };
    }
    let detail: Json = null;
    const sel = this.sel;
    if (sel !== null) {
      const path = `runs/${encodeURIComponent(this.runId)}/instances/${encodeURIComponent(sel.step)}` +
        (sel.key === null ? "" : `/${encodeURIComponent(sel.key)}`);
      try {
        detail = await this.api.get(path);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) throw e;
        detail = { step: sel.step, key: sel.key, missing: true };
      }
    }
    if (this.disposed) return;
    this.set("summary", summary);
    this.set("dag", { nodes, edges: state.dag.edges });
    this.set("selected_step", this.step);
    this.set("instances", page);
    this.set("selected", sel === null ? null : { ...sel });
    this.set("detail", detail);
    this.set("live", !TERMINAL.includes(state.status));
    if (this.onRefresh) this.onRefresh(summary);
  }

  private selectStep(step: string | null, nodes?: Json[]): void {
    this.offset = 0;
    this.filterStatus = "";
    this.filterText = "";
    this.sel = null;
    this.step = null;
    if (step === null) return;
    const node = (nodes || this.values.dag.nodes || []).find((n: Json) => n.step === step);
    if (!node) throw new Error(`run ${this.runId} has no step ${JSON.stringify(step)}`);
    this.step = step;
    if (node.kind !== "foreach") this.sel = { step, key: null }; // a task has one instance: open it
  }

  private say(ok: boolean, text: string, action: string, req: Json = null): void {
    this.seq += 1;
    this.set("message", { seq: this.seq, ok, text, action, req });
  }

  // -- messages from the view ---------------------------------------------------------------------
  private async handle(m: Json): Promise<void> {
    if (!m || typeof m.action !== "string") {
      this.say(false, `bad message: expected {action: ...}`, "?");
      return;
    }
    const action: string = m.action;
    const req = m.req ?? null;
    try {
      const text = await this.apply(action, m);
      await this.refresh();
      if (text !== null) this.say(true, text, action, req);
    } catch (e) {
      this.say(false, (e as Error).message || String(e), action, req);
      void this.refresh();
    }
  }

  private target(m: Json): { step: string; key: string | null } {
    const step = m.step || (this.sel && this.sel.step) || this.step;
    if (!step) throw new Error("no step given and none selected");
    return { step: String(step), key: keyText(m.key) };
  }

  private async command(verb: string, step: string | null, keys: string[] | null, payload: Json, reason: string | null): Promise<string> {
    const res = await this.api.post(`runs/${encodeURIComponent(this.runId)}/commands`, { verb, step, keys, payload, reason });
    if (res.state === "applied") return res.message || "done";
    if (res.state === "queued") {
      return `queued as command #${res.id}: no live process drives run ${this.runId}; ` +
        `\`nbflow resume ${this.runId}\` (or "Resume here") will apply it`;
    }
    return `sent as command #${res.id}; waiting for the run's owner to apply it`;
  }

  private keysOf(m: Json, key: string | null): string[] | null {
    if (m.keys !== undefined && m.keys !== null) {
      const keys = (m.keys as Json[]).map((k) => String(k));
      if (!keys.length) throw new Error("no instance selected: tick the rows to resume");
      return keys;
    }
    return key === null ? null : [key];
  }

  private async apply(action: string, m: Json): Promise<string | null> {
    const run = encodeURIComponent(this.runId);
    switch (action) {
      // navigation: no message
      case "refresh":
        return null;
      case "select_step":
        this.selectStep(m.step === null || m.step === undefined || m.step === "" ? null : String(m.step));
        return null;
      case "page":
        if (m.offset !== undefined) this.offset = Math.max(Number(m.offset) || 0, 0);
        else this.offset = Math.max(this.offset + (Number(m.delta) || 0) * PAGE_SIZE, 0);
        return null;
      case "filter": {
        const status = String(m.status || "");
        if (status && !STATUSES.includes(status)) throw new Error(`unknown status ${JSON.stringify(status)}`);
        this.filterStatus = status;
        this.filterText = String(m.text || "").slice(0, 200);
        this.offset = 0;
        return null;
      }
      case "select_instance": {
        const step = m.step || this.step;
        if (!step) throw new Error("select a step first");
        this.sel = { step: String(step), key: keyText(m.key) };
        return null;
      }
      case "close_instance":
        this.sel = null;
        return null;
      // operator actions: POST commands
      case "resume": {
        const t = this.target(m);
        return this.command("resume", t.step, this.keysOf(m, t.key), null, reasonOf(m));
      }
      case "resume_all":
        return this.command("resume", m.step || null, null, null, reasonOf(m));
      case "retry": {
        const t = this.target(m);
        return this.command("retry", t.step, this.keysOf(m, t.key), null, reasonOf(m));
      }
      case "skip": {
        const t = this.target(m);
        const output = "json" in m && m.json !== null ? parseJson(m.json, "json") : m.output;
        return this.command("skip", t.step, this.keysOf({}, t.key), { output }, reasonOf(m));
      }
      case "set_output": {
        const t = this.target(m);
        const value = "json" in m && m.json !== null ? parseJson(m.json, "json") : m.value;
        return this.command("set_output", t.step, this.keysOf({}, t.key), { value }, reasonOf(m));
      }
      case "set_inputs": {
        const t = this.target(m);
        const edited = "json" in m && m.json !== null ? parseJson(m.json, "json") : m.inputs;
        if (!edited || typeof edited !== "object" || Array.isArray(edited)) {
          throw new Error('the inputs must be a JSON object of input name to value, e.g. {"item": {...}}');
        }
        const d = this.values.detail || {};
        const current = d.inputs || {};
        const readonly = new Set<string>(d.readonly_inputs || []);
        const changed: Json = {};
        for (const [k, v] of Object.entries(edited)) {
          if (!(k in current) || (!readonly.has(k) && !same(current[k], v))) changed[k] = v;
        }
        if (!Object.keys(changed).length) throw new Error("nothing changed: the edited inputs equal the current ones");
        return this.command("set_inputs", t.step, this.keysOf({}, t.key), { inputs: changed }, reasonOf(m));
      }
      case "approve": {
        const t = this.target(m);
        const text = m.json;
        const payload = typeof text === "string" && text.trim() ? parseJson(text, "json") : (m.payload ?? null);
        const comment = (m.comment && String(m.comment).trim()) || reasonOf(m);
        return this.command("approve", t.step, null, { comment, payload }, reasonOf(m));
      }
      case "reject": {
        const t = this.target(m);
        const comment = (m.comment && String(m.comment).trim()) || reasonOf(m);
        return this.command("reject", t.step, null, { comment }, reasonOf(m));
      }
      case "cancel":
        return this.command("cancel", null, null, null, reasonOf(m));
      case "add_breakpoint": {
        const t = this.target(m);
        const when = String(m.when || "before");
        const condition = (m.condition && String(m.condition).trim()) || null;
        const workflow = this.values.summary.workflow;
        const made = await this.api.post("breakpoints", { workflow, step: t.step, key: t.key, when, condition });
        const label = t.step + (t.key !== null ? `:${t.key}` : "");
        return `breakpoint #${made.id} set on ${label} (${when}${condition ? `, if ${condition}` : ""}) for every run of '${workflow}'`;
      }
      case "remove_breakpoint": {
        const t = this.target(m);
        let removed = 0;
        const workflow = this.values.summary.workflow;
        for (const scope of [{ workflow }, { run: this.runId }]) {
          try {
            const res = await this.api.delete(`breakpoints?${query({ ...scope, step: t.step, key: t.key })}`);
            removed += res.removed || 0;
          } catch (e) {
            if (!(e instanceof ApiError) || e.status >= 500) throw e;
          }
        }
        const label = t.step + (t.key !== null ? `:${t.key}` : "");
        if (!removed) throw new Error(`no breakpoint on ${label} to remove`);
        return `removed ${removed} breakpoint(s) on ${label}`;
      }
      default:
        void run;
        throw new Error(`unknown action ${JSON.stringify(action)}`);
    }
  }
}
