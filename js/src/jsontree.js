// A small collapsible JSON tree (inputs and outputs of the instance panel), where one leaf can be
// edited in place: click it (or Enter on it), change the value, Enter saves, Escape cancels. The
// edit hands back the whole top-level value rebuilt with that one leaf changed. Written here
// instead of vanilla-jsoneditor, which adds ~1 MB minified to a bundle that ships with every
// displayed run (see README: "The JSON tree and its cost").
import { h } from "./dom.js";

/** @typedef {(string | number)[]} Path */
/**
 * @typedef {object} TreeOptions
 * @property {(name: string) => boolean} [editable]  whether a top-level entry can be edited
 * @property {(path: Path, value: unknown) => Promise<string | null>} [onEdit]  save one leaf: null when saved, else why not
 * @property {(elem: HTMLElement) => void} [stop]  keep Jupyter's shortcuts out of the edit field
 * @property {(path: Path) => void} [onClose]  an edit field closed (the caller may redraw what changed meanwhile)
 * @property {boolean} [single]  `entries` is one value (an output), not named entries (the inputs)
 */

const OPEN_DEPTH = 2; // levels unfolded at first
const MAX_CHILDREN = 200; // entries shown per object or array before "… N more"

/** @param {unknown} v */
const isBranch = (v) => v !== null && typeof v === "object" && Object.keys(/** @type {object} */ (v)).length > 0;

/** A copy of `root` with the value at `path` replaced.
 * @param {unknown} root
 * @param {Path} path
 * @param {unknown} value
 * @returns {unknown}
 */
export function setIn(root, path, value) {
  if (!path.length) return value;
  const [head, ...rest] = path;
  if (Array.isArray(root)) {
    const copy = root.slice();
    copy[/** @type {number} */ (head)] = setIn(root[/** @type {number} */ (head)], rest, value);
    return copy;
  }
  const obj = /** @type {Record<string, unknown>} */ (root);
  return { ...obj, [head]: setIn(obj[head], rest, value) };
}

/** The text of an edited leaf as a value: a text leaf stays text (edited without its quotes),
 * any other leaf is edited as JSON (type `"5"` to make a number a text).
 * @param {string} text
 * @param {unknown} old
 * @returns {{ok: true, value: unknown} | {ok: false, error: string}}
 */
export function parseLeaf(text, old) {
  if (typeof old === "string") return { ok: true, value: text };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, error: `Invalid JSON: ${/** @type {Error} */ (e).message}` };
  }
}

/** Give the focus back to the leaf at `path` of a tree drawn in `box` (after a redraw).
 * @param {HTMLElement} box
 * @param {Path} path
 */
export function focusLeaf(box, path) {
  const want = JSON.stringify(path);
  for (const el of box.querySelectorAll("[data-path]")) {
    if (el.getAttribute("data-path") === want) return /** @type {HTMLElement} */ (el).focus();
  }
}

/**
 * A tree of named entries (the inputs), or of one value (`single`: an output); `open` holds the
 * paths folded and unfolded by hand (kept by the caller across renders).
 * @param {unknown} entries
 * @param {Set<string>} open
 * @param {TreeOptions} opts
 */
export function jsonTree(entries, open, opts = {}) {
  const root = h("div", { class: "nbf-tree", role: "tree" });
  /**
   * @param {string | number | null} name
   * @param {unknown} v
   * @param {Path} path
   * @param {boolean} canEdit
   * @returns {HTMLElement}
   */
  const node = (name, v, path, canEdit) => {
    const keyEl = name === null ? "" : h("span", { class: "nbf-tree-key" }, typeof name === "number" ? String(name) : JSON.stringify(name), ": ");
    if (isBranch(v)) {
      const arr = Array.isArray(v);
      const all = Object.entries(/** @type {object} */ (v));
      const id = JSON.stringify(path);
      const det = h("details", { class: "nbf-tree-branch", role: "treeitem" });
      det.open = open.has(id) || (!open.has(`!${id}`) && path.length < OPEN_DEPTH);
      det.addEventListener("toggle", () => {
        open.delete(det.open ? `!${id}` : id);
        open.add(det.open ? id : `!${id}`);
      });
      const shown = all.slice(0, MAX_CHILDREN);
      det.append(
        h("summary", { class: "nbf-tree-head" }, keyEl, arr ? "[" : "{", h("span", { class: "nbf-muted nbf-tree-count" }, ` ${all.length} ${arr ? (all.length === 1 ? "item" : "items") : all.length === 1 ? "key" : "keys"} `)),
        h("div", { class: "nbf-tree-children", role: "group" }, shown.map(([k, c]) => node(arr ? Number(k) : k, c, [...path, arr ? Number(k) : k], canEdit)),
          all.length > shown.length ? h("div", { class: "nbf-muted" }, `… ${all.length - shown.length} more`) : ""),
        h("span", { class: "nbf-tree-close" }, arr ? "]" : "}"));
      return det;
    }
    const text = v === undefined ? "—" : JSON.stringify(v);
    const valEl = h("span", { class: `nbf-tree-val nbf-tv-${v === null ? "null" : typeof v}`, "data-path": JSON.stringify(path) }, text);
    const row = h("div", { class: "nbf-tree-leaf", role: "treeitem" }, keyEl, valEl);
    if (canEdit && opts.onEdit) {
      valEl.setAttribute("tabindex", "0");
      valEl.setAttribute("role", "button");
      valEl.setAttribute("aria-label", `edit ${path.join(".")}`);
      valEl.title = "click to edit this value (Enter saves, Escape cancels)";
      valEl.classList.add("nbf-tree-editable");
      const start = () => edit(row, valEl, path, v);
      valEl.addEventListener("click", start);
      valEl.addEventListener("keydown", (e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          e.stopPropagation();
          start();
        }
      });
    }
    return row;
  };

  /**
   * @param {HTMLElement} row
   * @param {HTMLElement} valEl
   * @param {Path} path
   * @param {unknown} old
   */
  const edit = (row, valEl, path, old) => {
    const input = h("input", { class: "nbf-input nbf-tree-input", testid: "tree-edit", "aria-label": `new value of ${path.join(".")}`, value: typeof old === "string" ? old : JSON.stringify(old) ?? "" });
    const err = h("span", { class: "nbf-json-error" });
    if (opts.stop) opts.stop(input);
    const done = () => {
      input.remove();
      err.remove();
      valEl.hidden = false;
      valEl.focus();
      if (opts.onClose) opts.onClose(path);
    };
    input.addEventListener("keydown", async (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        done();
      } else if (e.key === "Enter") {
        e.preventDefault();
        e.stopPropagation();
        const parsed = parseLeaf(input.value, old);
        if (!parsed.ok) {
          err.textContent = parsed.error;
          input.classList.add("nbf-invalid");
          return;
        }
        input.disabled = true;
        const why = opts.onEdit ? await opts.onEdit(path, parsed.value) : null;
        input.disabled = false;
        if (why) {
          err.textContent = why;
          input.focus();
        } else done();
      }
    });
    input.addEventListener("blur", () => {
      if (!input.disabled && !err.textContent) done();
    });
    valEl.hidden = true;
    row.append(input, err);
    input.focus();
    input.select();
  };

  if (opts.single) {
    root.append(node(null, entries, [], !!(opts.editable && opts.editable(""))));
    return root;
  }
  const named = /** @type {Record<string, unknown>} */ (entries);
  for (const name of Object.keys(named)) root.append(node(name, named[name], [name], !!(opts.editable && opts.editable(name))));
  return root;
}
