// @ts-check
// What a function answered (status, cold or warm, duration, headers, body) and log lines,
// as the test panel, the playground and the invocation history show them.

import { clear, h, setText } from './dom.js';
import { fmtMs, fmtTime, statusClass, statusLine } from './format.js';

/**
 * @typedef {object} Answer
 * @property {number} statusCode
 * @property {Array<[string, string]>} headerPairs
 * @property {string} bodyText
 * @property {boolean | null} cold null when unknown
 * @property {number | null | undefined} durationMs
 * @property {number | null | undefined} initMs
 * @property {string | null} invocationId
 * @property {boolean} [streaming] the body is still arriving
 */

/**
 * The answer of a function: status, cold/warm, duration, headers, body.
 * @param {string} prefix the start of each part's test id
 */
export function responseView(prefix) {
  const status = h('span', { class: 'pill', testid: prefix + '-status' });
  const start = h('span', { class: 'pill pill-quiet', testid: prefix + '-start' });
  const duration = h('span', { class: 'metric', testid: prefix + '-duration' });
  const init = h('span', { class: 'metric', testid: prefix + '-init' });
  const id = h('span', { class: 'metric mono small', testid: prefix + '-id' });
  const headersList = h('dl', { class: 'headers', testid: prefix + '-headers' });
  const headers = h('details', { class: 'headers-box' }, h('summary', {}, 'Headers'), headersList);
  const body = h('pre', { class: 'code-block', testid: prefix + '-body', tabindex: '0', 'aria-label': 'Response body' });
  const errorText = h('p', { class: 'error-summary', testid: prefix + '-error' });
  const stack = h('pre', { class: 'code-block error-text', tabindex: '0', 'aria-label': 'Stack trace' });
  const errorBox = h('div', { hidden: true }, errorText, stack);
  const el = h('div', { class: 'response', testid: prefix + '-result', hidden: true },
    h('div', { class: 'response-meta' }, status, start, duration, init, id),
    errorBox,
    h('h3', { class: 'sub' }, 'Body'), body, headers);
  return {
    el,
    /** @param {Answer} answer */
    show({ statusCode, headerPairs, bodyText, cold, durationMs, initMs, invocationId, streaming }) {
      el.hidden = false;
      el.dataset.streaming = streaming ? 'true' : 'false';
      status.className = statusClass(statusCode);
      setText(status, statusLine(statusCode));
      start.hidden = cold == null;
      setText(start, cold ? 'cold start' : 'warm');
      start.dataset.cold = cold ? 'true' : 'false';
      setText(duration, durationMs == null ? '' : 'Duration ' + fmtMs(durationMs));
      duration.hidden = durationMs == null;
      init.hidden = !cold || initMs == null;
      setText(init, initMs == null ? '' : 'Init ' + fmtMs(initMs));
      id.hidden = !invocationId;
      setText(id, invocationId ? 'Invocation ' + invocationId : '');
      clear(headersList);
      for (const [k, v] of headerPairs) headersList.append(h('dt', {}, k), h('dd', {}, v));
      setText(body, bodyText === '' ? '(empty body)' : bodyText);
      // An error answer ({"error": {...}}) also gets its message and stack in plain text.
      /** @type {{type?: string, code?: string, message: string, stack?: string} | null} */
      let err = null;
      if (statusCode >= 400) {
        try {
          const j = JSON.parse(bodyText);
          if (j && j.error && typeof j.error.message === 'string') err = j.error;
        } catch {
          // Not an error object: the body says it all.
        }
      }
      errorBox.hidden = !err;
      if (err) {
        setText(errorText, `${err.type || err.code || 'Error'}: ${err.message}`);
        stack.hidden = !err.stack;
        setText(stack, err.stack || '');
      }
    },
    hide() {
      el.hidden = true;
    },
  };
}

/**
 * One recorded log line.
 * @typedef {{ts: string, stream?: string, line?: string | null, invocation_id?: string}} LogLine
 */

/**
 * A box of log lines, or "No output.".
 * @param {LogLine[] | null | undefined} logs
 * @param {string} testid
 */
export function logLines(logs, testid) {
  if (!logs || !logs.length) return h('p', { class: 'muted small', testid }, 'No output.');
  const box = h('div', { class: 'log-box', testid, tabindex: '0', role: 'region', 'aria-label': 'Logs' });
  for (const l of logs) box.append(logLine(l, false));
  return box;
}

/**
 * One log line: time, stream, (the invocation's id), text.
 * @param {LogLine} l
 * @param {boolean} withInvocation
 */
export function logLine(l, withInvocation) {
  const row = h('div', { class: 'log-line' + (l.stream === 'stderr' ? ' log-stderr' : ''), testid: 'log-line' },
    h('span', { class: 'log-ts' }, fmtTime(l.ts)),
    h('span', { class: 'log-stream' }, l.stream || ''));
  if (withInvocation) {
    row.append(h('span', { class: 'log-inv', title: l.invocation_id || '' }, (l.invocation_id || '').slice(-8)));
  }
  row.append(h('span', { class: 'log-text' }, l.line == null ? '' : String(l.line)));
  return row;
}
