// The view's one way to Python: every action is the widget's anywidget command `act {name, args}`
// (nbflow/notebook/widget.py RunWidget.act), called with anywidget's `invoke()`; the JupyterLab
// sidebar hands in an `invoke` of its own that carries the same call over REST
// (labextension/src/model.ts). The answer comes back to the caller: no request ids.

/** @typedef {import("./types.js").Answer} Answer */
/** @typedef {import("./types.js").Invoke} Invoke */

/** How long an action may take before the view gives up waiting (an owner applying a command). */
export const ACTION_TIMEOUT_MS = 120_000;

/**
 * @typedef {(name: string, args?: Record<string, unknown>) => Promise<Answer>} Call
 *   one action of nbflow.notebook.controller.Controller; never rejects (a failure is an answer with ok false)
 */

/**
 * @param {Invoke | undefined} invoke  anywidget's `experimental.invoke`, or the sidebar's
 * @returns {Call}
 */
export function transport(invoke) {
  return async (name, args = {}) => {
    if (!invoke) {
      return { ok: false, text: "this front end cannot call the widget's commands (anywidget >= 0.10 is needed)", action: name };
    }
    try {
      const [answer] = await invoke("act", { name, args }, { signal: AbortSignal.timeout(ACTION_TIMEOUT_MS) });
      if (answer && typeof answer === "object" && "ok" in answer) return /** @type {Answer} */ (answer);
      return { ok: false, text: `unexpected answer to ${name}: ${JSON.stringify(answer)}`, action: name };
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      return { ok: false, text: `no answer to ${name} from the kernel: ${why}`, action: name };
    }
  };
}
