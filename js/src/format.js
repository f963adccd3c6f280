// Numbers, times, values and labels as the view writes them.
/** @typedef {import("./types.js").Counts} Counts */
/** @typedef {import("./types.js").When} When */
/** @typedef {import("./types.js").Key} Key */
/** @typedef {import("./types.js").ErrorInfo} ErrorInfo */

export const STATUSES = ["pending", "ready", "running", "retrying", "paused", "waiting", "succeeded", "failed", "skipped", "cancelled"];
// the order of the stacked progress bar and of a node's mini bar
export const BAR_ORDER = ["succeeded", "skipped", "failed", "cancelled", "paused", "waiting", "running", "retrying", "ready", "pending"];
export const TERMINAL_RUN = ["succeeded", "failed", "cancelled"];


/** @param {number | null | undefined} n */
export const fmt = (n) => Number(n || 0).toLocaleString("en-US");
/**
 * @param {number | null | undefined} n
 * @param {string} word
 */
export const plural = (n, word) => `${fmt(n)} ${word}${n === 1 ? "" : "s"}`;
/** @param {unknown} text */
export const quote = (text) => `“${text}”`;

/** @param {Counts | undefined} counts */
export function countsText(counts, sep = " · ") {
  const parts = Object.entries(counts || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return parts.map(([st, n]) => `${fmt(n)} ${st}`).join(sep) || "not started";
}

/** @param {unknown} value */
export function pretty(value) {
  if (value === undefined) return "";
  try {
    return JSON.stringify(value, null, 2);
  } catch (e) {
    return String(value);
  }
}

/** @param {unknown} value */
export function compact(value, max = 240) {
  let text;
  try {
    text = value === undefined ? "—" : JSON.stringify(value);
  } catch (e) {
    text = String(value);
  }
  return text.length > max ? text.slice(0, max) + "…" : text;
}

/** @param {string | null | undefined} text */
export function cut(text, max = 160) {
  text = String(text ?? "");
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** @param {When} t */
export function toDate(t) {
  if (t == null || t === "") return null;
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t); // numbers are epoch seconds (event data)
  return isNaN(d.getTime()) ? null : d;
}

// 20:22:24.151 (history) and 20:22:24 (everything else), in the browser's time zone
/** @param {When} t */
export function time(t) {
  const d = toDate(t);
  return d ? d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0") : "";
}

/** @param {When} t */
export function clock(t) {
  const d = toDate(t);
  return d ? d.toLocaleTimeString([], { hour12: false }) : "";
}

/** A duration in one format everywhere (rows, attempts, history, timeline): ms below a second,
 * seconds with one decimal below a minute, then minutes and hours.
 * @param {number | null | undefined} x seconds */
export function secs(x) {
  if (x == null || isNaN(x)) return "";
  x = Number(x);
  if (x < 0.0005) return "<1 ms";
  if (x < 1) return `${Math.round(x * 1000)} ms`;
  if (x < 60) return `${+x.toFixed(1)} s`;
  if (x < 3600) return `${Math.floor(x / 60)} min ${Math.round(x % 60)} s`;
  return `${Math.floor(x / 3600)} h ${Math.round((x % 3600) / 60)} min`;
}

/** "N word(s)" written by Python, as proper plurals ("1 instance", "12 instances").
 * @param {string} text */
export const plurals = (text) => text.replace(/\b(\d[\d,]*) (\w+?)\(s\)/g, (_, n, w) => `${n} ${w}${n === "1" ? "" : "s"}`);

/**
 * @param {When} a
 * @param {When} b
 */
export function duration(a, b) {
  const da = toDate(a);
  const db = toDate(b);
  return da && db ? secs((db.getTime() - da.getTime()) / 1000) : "";
}

/**
 * @param {string} step
 * @param {Key | undefined} key
 */
export const label = (step, key) => (key == null ? step : `${step}:${key}`);
/** @param {ErrorInfo | string | null | undefined} e */
export const errText = (e) => (!e ? "" : typeof e === "string" ? e : `${e.type}: ${e.message}`);
/** @type {(v: unknown) => v is Record<string, unknown>} */
export const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * @param {string} text
 * @param {number} max
 */
export function truncate(text, max) {
  text = String(text);
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}
