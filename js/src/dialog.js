// The view's one modal dialog (a native <dialog> shown with showModal: the rest of the page is inert,
// Tab stays inside, Escape cancels), for every verb that asks a question: a confirmation, the output
// of a skip, the bulk edit's expression. Its title labels it; the first field gets the focus.
import { h } from "./dom.js";

/**
 * @typedef {object} DialogSpec
 * @property {string} title
 * @property {string} [text]  a line under the title (what the verb acts on)
 * @property {HTMLElement[]} [body]  fields (see `field`) and other content
 * @property {string} confirm  the confirm button's name, the verb's ("Skip", "Retry", "Apply")
 * @property {boolean} [danger]
 * @property {() => Promise<true | string>} onConfirm  true: done, close; a string: why not, shown in the dialog
 * @property {() => void} [onClose]
 */

/**
 * @typedef {object} Dialogs
 * @property {(spec: DialogSpec) => void} open
 * @property {() => void} close
 * @property {() => boolean} isOpen
 * @property {(text: string) => void} error  show why the dialog cannot go on
 */

let ids = 0;

/** A labelled field: the label's text is the control's accessible name.
 * @param {string} label
 * @param {HTMLElement} control
 * @param {string} [hint]
 */
export function field(label, control, hint) {
  return h("label", { class: "nbf-field" }, h("span", { class: "nbf-field-label" }, label), control, hint ? h("span", { class: "nbf-muted nbf-field-hint" }, hint) : "");
}

/**
 * @param {HTMLElement} root  the view's root (the dialog lives inside it, for its styles)
 * @param {(elem: HTMLElement) => void} stop  keep Jupyter's shortcuts out
 * @returns {Dialogs & {el: HTMLDialogElement}}
 */
export function createDialogs(root, stop) {
  const titleId = `nbf-dialog-title-${++ids}`;
  const title = h("h3", { class: "nbf-dialog-title", id: titleId });
  const text = h("p", { class: "nbf-dialog-text" });
  const body = h("div", { class: "nbf-dialog-body" });
  const err = h("div", { class: "nbf-json-error", role: "alert", testid: "dialog-error" });
  const confirm = h("button", { class: "nbf-btn nbf-primary", type: "submit", testid: "dialog-confirm" });
  const cancel = h("button", { class: "nbf-btn", type: "button", testid: "dialog-cancel", onclick: () => close() }, "Close");
  const form = h("form", { method: "dialog", class: "nbf-dialog-form" }, title, text, body, err, h("div", { class: "nbf-row nbf-dialog-buttons" }, h("span", { class: "nbf-spacer" }), cancel, confirm));
  const el = /** @type {HTMLDialogElement} */ (h("dialog", { class: "nbf-dialog", role: "dialog", "aria-modal": "true", "aria-labelledby": titleId, testid: "dialog" }, form));
  stop(el);
  root.append(el);
  /** @type {DialogSpec | null} */
  let spec = null;

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void go();
  });
  el.addEventListener("cancel", (e) => {
    e.preventDefault(); // Escape: close through our own path (onClose)
    close();
  });
  el.addEventListener("keydown", (e) => {
    const t = /** @type {HTMLElement} */ (e.target);
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && t.tagName === "TEXTAREA") {
      e.preventDefault();
      void go();
    }
  });

  async function go() {
    const s = spec;
    if (!s || confirm.disabled) return;
    confirm.disabled = true;
    err.textContent = "";
    try {
      const res = await s.onConfirm();
      if (spec !== s) return;
      if (res === true) close();
      else err.textContent = res;
    } finally {
      confirm.disabled = false;
    }
  }

  /** @param {DialogSpec} s */
  function open(s) {
    if (spec) close();
    spec = s;
    title.textContent = s.title;
    text.textContent = s.text || "";
    text.hidden = !s.text;
    body.replaceChildren(...(s.body || []));
    err.textContent = "";
    confirm.textContent = s.confirm;
    confirm.className = `nbf-btn ${s.danger ? "nbf-danger nbf-armed" : "nbf-primary"}`;
    confirm.disabled = false;
    if (!el.open) {
      try {
        el.showModal();
      } catch (e) {
        el.setAttribute("open", ""); // detached or an old browser: shown, not modal
      }
    }
    const first = /** @type {HTMLElement | null} */ (body.querySelector("input, textarea, select"));
    (first || confirm).focus();
    if (first instanceof HTMLInputElement || first instanceof HTMLTextAreaElement) first.select();
  }

  function close() {
    const s = spec;
    spec = null;
    if (el.open) el.close();
    el.removeAttribute("open");
    if (s && s.onClose) s.onClose();
  }

  return { el, open, close, isOpen: () => spec !== null, error: (t) => (err.textContent = t) };
}
