// Tiny DOM helpers: elements (h), SVG elements (s), their attributes, and copying to the clipboard.

/** @typedef {string | number | boolean | null | undefined | ((ev: Event) => unknown)} AttrValue */
/** @typedef {Record<string, AttrValue>} Attrs  see setAttrs */
/** @typedef {Node | string | number | boolean | null | undefined} Child  null and false are left out */

export const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/**
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {SVGElementTagNameMap[K]}
 */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/**
 * class, text (the content), on<event> (a listener), testid (data-testid), or an attribute (true: present).
 * @param {Element} el
 * @param {Attrs} attrs
 */
export function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") el.setAttribute("class", String(v));
    else if (k === "text") el.textContent = String(v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === "testid") el.setAttribute("data-testid", String(v));
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

/**
 * @param {string} text
 * @param {HTMLInputElement | HTMLTextAreaElement} fallbackInput
 * @returns {Promise<boolean>}
 */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    // not a secure context, or no permission: select the text and use the old command
    fallbackInput.focus();
    fallbackInput.select();
    try {
      return document.execCommand("copy");
    } catch (e2) {
      return false;
    }
  }
}
