// @ts-check
// Formatting: durations, counts, times, HTTP status lines and bodies as the console shows them.

/**
 * A duration in milliseconds, with the precision that reads well at its size.
 * @param {unknown} ms
 */
export function fmtMs(ms) {
  if (ms == null || Number.isNaN(Number(ms))) return '—';
  const n = Number(ms);
  if (n < 1) return n.toFixed(2) + ' ms';
  if (n < 100) return n.toFixed(1) + ' ms';
  if (n < 10000) return Math.round(n) + ' ms';
  return (n / 1000).toFixed(1) + ' s';
}

/** @param {number | null | undefined} n */
export function fmtCount(n) {
  return n == null ? '—' : Number(n).toLocaleString('en-US');
}

/**
 * hh:mm:ss.mmm, for log lines.
 * @param {string | number} ts
 */
export function fmtTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts || '');
  /** @type {(n: number, w?: number) => string} */
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/**
 * The time, with the date when it is not today.
 * @param {string | number} ts
 */
export function fmtDateTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts || '');
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return sameDay ? time : `${d.toLocaleDateString('en-CA')} ${time}`;
}

/**
 * hh:mm, for chart axes.
 * @param {string | number} ts
 */
export function fmtClock(ts) {
  const d = new Date(ts);
  return d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
}

/**
 * "2 busy · 1 idle", or "0".
 * @param {{busy?: number, idle?: number, starting?: number} | null | undefined} inst
 */
export function fmtInstances(inst) {
  if (!inst) return '—';
  const parts = [];
  for (const k of /** @type {const} */ (['busy', 'idle', 'starting'])) {
    if (inst[k]) parts.push(`${inst[k]} ${k}`);
  }
  return parts.length ? parts.join(' · ') : '0';
}

/** @type {Record<number, string>} */
const STATUS_TEXT = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently',
  302: 'Found', 304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
  404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 413: 'Payload Too Large',
  422: 'Unprocessable Entity', 429: 'Too Many Requests', 500: 'Internal Server Error',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** @param {number} status */
export function statusLine(status) {
  return `${status} ${STATUS_TEXT[status] || ''}`.trim();
}

/** @param {number} status */
export function statusClass(status) {
  if (status >= 500) return 'pill pill-bad';
  if (status >= 400) return 'pill pill-warn';
  return 'pill pill-good';
}

/**
 * Pretty-prints JSON text; anything else comes back unchanged.
 * @param {string} text
 * @param {string} [contentType]
 */
export function prettyBody(text, contentType) {
  const looksJson = /json/i.test(contentType || '') || /^\s*[[{"]/.test(text);
  if (!looksJson) return text;
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/**
 * A function's load error as the runtime reported it.
 * @typedef {{type?: string, message?: string, line?: number | null}} LoadError
 */

/**
 * "Type: message (line N)", without repeating a line number the message already has.
 * @param {LoadError} err
 */
export function loadErrorText(err) {
  let text = `${err.type ? err.type + ': ' : ''}${err.message || ''}`;
  if (err.line && !new RegExp(`line ${err.line}\\b`).test(text)) text += ` (line ${err.line})`;
  return text;
}

const MAX_BODY_CHARS = 200000;

/**
 * Cuts a body too long to show, saying how much is left out.
 * @param {string} text
 */
export function clip(text) {
  if (text.length <= MAX_BODY_CHARS) return text;
  return text.slice(0, MAX_BODY_CHARS) + `\n… (${text.length - MAX_BODY_CHARS} more characters not shown)`;
}

/**
 * A body as text when it is UTF-8, else a note of its size.
 * @param {Uint8Array} bytes
 * @param {string} contentType
 */
export function decodeBody(bytes, contentType) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return `(${bytes.length} bytes of binary data${contentType ? ', ' + contentType : ''})`;
  }
}

/**
 * A number when the text is one, else the text (so the API names the bad field).
 * @param {string} s
 * @returns {number | string | undefined}
 */
export function numberOrText(s) {
  const t = String(s).trim();
  if (t === '') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}
