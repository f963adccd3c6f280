// A model for the notebook widget's view (js/src/widget.js) backed by the REST API instead of a
// kernel. It is a transport only: every action of the view, and the periodic refresh, is one
// `POST /nbflow/api/runs/<run>/actions/<name>` to the same Python controller the notebook widget
// uses (nbflow/notebook/controller.py, served by nbflow/server/controller.py), which answers with
// the traits to show and the view state to send back next time. It implements the small part of
// anywidget's model API the view uses (get, on/off "change:NAME") and an `invoke` in the shape of
// anywidget's `experimental.invoke`.
import { Api, ApiError, Json } from "./api";

const TERMINAL = ["succeeded", "failed", "cancelled"];
export const POLL_MS = 1000;
const IDLE_POLL_MS = 5000; // a finished run: look now and then (a fork or a re-read changes nothing)

type Listener = (...args: Json[]) => void;

function same(a: Json, b: Json): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** The debugger state of one run, as the controller computes it, in the shape the widget's view expects. */
export class RestRunModel {
  private values: Record<string, Json> = {};
  private listeners = new Map<string, Set<Listener>>();
  /** The controller's view state (selected step, page, filters, instance): opaque here, sent back as is. */
  private view: Json = null;
  private seq = 0;
  private timer: number | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private inFlight = 0;
  private disposed = false;
  /** Called after every answer (the panel uses it for its title). */
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
      history: { total: 0, marks: [], at: null },
      diff: null,
    };
  }

  // -- the anywidget model API the view uses ---------------------------------------------------------
  get(name: string): Json {
    return this.values[name];
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

  /** anywidget's `experimental.invoke`, over REST: the view's `act` command becomes one POST. */
  async invoke(name: string, msg: Json): Promise<[Json, DataView[]]> {
    if (name !== "act" || !msg || typeof msg.name !== "string") {
      return [{ ok: false, text: `unknown command ${JSON.stringify(name)}`, action: String(name) }, []];
    }
    return [await this.act(msg.name, msg.args ?? {}), []];
  }

  private set(name: string, value: Json): void {
    if (same(this.values[name], value)) return;
    this.values[name] = value;
    this.emit(`change:${name}`, value);
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

  // -- the one endpoint ------------------------------------------------------------------------------
  /** One action, after those already asked (each answer carries the view state the next one needs). */
  act(name: string, args: Json): Promise<Json> {
    this.inFlight += 1;
    const done = this.queue.then(() => this.post(name, args)).finally(() => {
      this.inFlight -= 1;
    });
    this.queue = done.catch(() => undefined);
    return done;
  }

  private async post(name: string, args: Json): Promise<Json> {
    let body: Json;
    try {
      body = await this.api.post(`runs/${encodeURIComponent(this.runId)}/actions/${encodeURIComponent(name)}`, { args, view: this.view });
    } catch (e) {
      if (e instanceof ApiError && e.body && e.body.result) body = e.body; // refused: the state as it is now comes too
      else return { ok: false, text: (e as Error).message || String(e), action: name, command: null };
    }
    if (this.disposed) return body.result;
    this.view = body.view;
    for (const [k, v] of Object.entries(body.state as Record<string, Json>)) this.set(k, v);
    if (this.onRefresh) this.onRefresh(body.state.summary);
    return body.result;
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
        const go = this.visible && !this.inFlight ? this.refresh() : Promise.resolve();
        void go.finally(() => this.schedule());
      },
      terminal ? IDLE_POLL_MS : POLL_MS,
    );
  }

  /** Read the run again (the controller's `refresh` action); a failure shows in the view's message. */
  async refresh(): Promise<void> {
    const answer = await this.act("refresh", {});
    if (!answer.ok && !this.disposed) {
      this.seq += 1;
      this.set("message", { seq: this.seq, ok: false, text: `cannot read run ${this.runId}: ${answer.text}`, action: "refresh" });
    }
  }
}
