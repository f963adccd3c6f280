// The one message element ([data-testid=message]): it moves next to the control that asked, and
// shows "working…", then the answer.
import { h } from "./dom.js";

/** @typedef {import("./types.js").Message} Message */

export function createMessages() {
  const slotTop = h("div", { class: "nbf-msg-slot" });
  const el = h("div", { class: "nbf-message", testid: "message", role: "status", "aria-live": "polite", title: "click to dismiss", onclick: () => show(null) });
  slotTop.append(el);

  /** @param {HTMLElement | null} [slot] */
  function place(slot) {
    const where = slot || slotTop;
    if (el.parentNode !== where) where.append(el);
  }

  /** @param {Message | null} m */
  function show(m) {
    // a slot that is no longer shown (a closed panel, another step): fall back to the top of the right column
    if (el.parentNode !== slotTop && /** @type {Element} */ (el.parentNode).closest("[hidden]")) place(slotTop);
    el.textContent = m && m.text ? m.text : "";
    el.className = `nbf-message${m && m.text ? (m.pending ? " pending" : m.ok ? " ok" : " error") : ""}`;
  }

  return { slotTop, place, show };
}
