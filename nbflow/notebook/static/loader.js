// nbflow's debugger view, loaded once per page (nbflow/notebook/assets.py). This small module is the
// widget's `_esm`, all that a saved notebook's widget state carries; the view's code and styles
// (widget.js and widget.css beside this file, ~150 KB) come from the Jupyter server extension
// (GET <base_url>nbflow/static/<id>/widget.js, cached by the browser), else from the kernel (the
// widget's `assets` command). <id> is the digest of those files: a server whose files differ answers
// 404, and the kernel sends its own.
const ID = "__NBFLOW_ASSETS_ID__";
const KEY = `nbflow-widget-${ID}`;
const KERNEL_TIMEOUT_MS = 120_000; // the kernel answers after the cell it runs

/** The Jupyter server's base URL from the page's config, or null outside a Jupyter page. */
function baseUrl() {
  try {
    const cfg = document.getElementById("jupyter-config-data");
    const base = cfg && JSON.parse(cfg.textContent || "{}").baseUrl;
    return typeof base === "string" ? new URL(base.endsWith("/") ? base : `${base}/`, document.baseURI).href : null;
  } catch {
    return null;
  }
}

/** @param {string | null} href @param {string} [text] */
function addStyle(href, text) {
  if (document.getElementById(KEY)) return Promise.resolve();
  if (href === null) {
    const style = Object.assign(document.createElement("style"), { id: KEY, textContent: text || "" });
    document.head.appendChild(style);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const link = Object.assign(document.createElement("link"), { id: KEY, rel: "stylesheet", href });
    link.onload = link.onerror = () => resolve(undefined);
    document.head.appendChild(link);
  });
}

async function fromServer() {
  const base = baseUrl();
  if (base === null) throw new Error("not a Jupyter page");
  const root = `${base}nbflow/static/${ID}/`;
  const mod = await import(/* webpackIgnore: true */ `${root}widget.js`);
  await addStyle(`${root}widget.css`);
  return mod.default;
}

/** @param {any} invoke anywidget's experimental.invoke */
async function fromKernel(invoke) {
  if (!invoke) throw new Error("this front end cannot call the widget's commands (anywidget >= 0.10 is needed)");
  const [assets] = await invoke("assets", {}, { signal: AbortSignal.timeout(KERNEL_TIMEOUT_MS) });
  const url = URL.createObjectURL(new Blob([assets.js], { type: "text/javascript" }));
  try {
    const mod = await import(/* webpackIgnore: true */ url);
    await addStyle(null, assets.css);
    return mod.default;
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** The view's module, once per page (every widget's loader shares it). @param {any} invoke */
function view(invoke) {
  const cache = /** @type {any} */ (globalThis).__nbflowWidget || ((/** @type {any} */ (globalThis)).__nbflowWidget = {});
  if (!cache[ID]) {
    cache[ID] = fromServer().catch(() => fromKernel(invoke));
    cache[ID].catch(() => delete cache[ID]); // the next display tries again
  }
  return cache[ID];
}

export default {
  /** @param {{model: any, el: HTMLElement, experimental?: {invoke?: any}}} ctx */
  async render(ctx) {
    const note = Object.assign(document.createElement("div"), {
      className: "nbflow-loading", textContent: "nbflow: loading the debugger view\u2026",
    });
    ctx.el.appendChild(note);
    let widget;
    try {
      widget = await view(ctx.experimental && ctx.experimental.invoke);
    } catch (e) {
      note.textContent = "nbflow: the debugger view could not be loaded: neither the Jupyter server extension " +
        `nor the kernel sent it (${e instanceof Error ? e.message : String(e)}). Run the cell again with the kernel running.`;
      return undefined;
    }
    note.remove();
    return widget.render(ctx);
  },
};
