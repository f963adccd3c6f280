// The one message element ([data-testid=message]): it moves next to the control that asked, and
// shows "working…", then the answer. An answer about one instance is cleared when another is
// chosen or its status moves on (detail.js), and a success fades after a few seconds, so it never
// sits beside a state it no longer describes.
import { h } from "./dom.js";
import { plurals } from "./format.js";

/** @typedef {import("./types.js").Message} Message */

const OK_SHOWN_MS = 8000; // how long a success stays

export function createMessages() {
  const slotTop = h("div", { class: "nbf-msg-slot" });
  const el = h("div", { class: "nbf-message", testid: "message", role: "status", "aria-live": "polite", title: "click to dismiss", onclick: () => show(null) });
  slotTop.append(el);
  let pending = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer = undefined;

  /** @param {HTMLElement | null} [slot] */
  function place(slot) {
    const where = slot || slotTop;
    if (el.parentNode !== where) where.append(el);
  }

  /** @param {Message | null} m */
  function show(m) {
    // a slot that is no longer shown (a closed panel, another step): fall back to the top of the right column
    if (el.parentNode !== slotTop && /** @type {Element} */ (el.parentNode).closest("[hidden]")) place(slotTop);
    el.textContent = m && m.text ? plurals(m.text) : "";
    el.className = `nbf-message${m && m.text ? (m.pending ? " pending" : m.ok ? " ok" : " error") : ""}`;
    pending = !!(m && m.pending);
    clearTimeout(timer);
    // a success ages: it says what was done, not how things stand now
    if (m && m.text && m.ok && !m.pending) timer = setTimeout(() => show(null), OK_SHOWN_MS);
  }

  /**
   * Clear the message if it shows in `slot` (an answer still awaited stays, unless `evenPending`).
   * @param {HTMLElement} slot
   * @param {boolean} [evenPending]
   */
  function clear(slot, evenPending = false) {
    if (el.parentNode === slot && (evenPending || !pending)) show(null);
  }

  return { slotTop, place, show, clear, dispose: () => clearTimeout(timer) };
}
