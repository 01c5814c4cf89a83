// @ts-check
// The Live logs tab: the function's log lines as they happen (Server-Sent Events read with
// fetch, so the token goes in a header), reconnecting with backoff; pause and clear.

import { apiRaw, errMessage, errorFrom, isUnauthorized } from './api.js';
import { clear, enc, h, setText } from './dom.js';
import { logLine } from './response.js';

/** @typedef {import('./response.js').LogLine} LogLine */

const MAX_TAIL_LINES = 2000;

/**
 * @param {import('./page.js').Page} pg
 * @param {string} name the function's
 */
export function logTail(pg, name) {
  const status = h('span', { class: 'tail-status', testid: 'tail-status', role: 'status' });
  const pauseBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'tail-pause' }, 'Pause');
  const clearBtn = h('button', { type: 'button', class: 'btn btn-small btn-quiet', testid: 'tail-clear' }, 'Clear');
  const box = h('div', { class: 'log-box tail', testid: 'log-tail', tabindex: '0', role: 'log', 'aria-label': 'Live logs', 'aria-live': 'off' });
  const emptyMsg = h('p', { class: 'muted small tail-empty', testid: 'tail-empty' }, 'No log lines yet. Lines appear here as invocations finish.');
  const el = h('div', {},
    h('div', { class: 'panel-head' }, h('h2', { class: 'sub' }, 'Live logs'), h('div', { class: 'tail-controls' }, status, pauseBtn, clearBtn)),
    emptyMsg, box);
  /** @type {AbortController | null} */
  let controller = null;
  let started = false;
  // A reconnect replays the latest lines: those already shown are skipped (counted, so
  // two identical lines stay two lines).
  /** @type {Map<string, number>} */
  const shown = new Map();
  /** @type {Map<string, number>} */
  let replaySkip = new Map();
  /** @param {LogLine} l */
  const lineKey = (l) => `${l.invocation_id}|${l.ts}|${l.stream}|${l.line}`;
  let paused = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let retryTimer = null;
  let backoff = 1000;

  /**
   * @param {string} state
   * @param {string} text
   */
  const setStatus = (state, text) => {
    status.dataset.state = state;
    status.className = 'tail-status tail-' + state;
    setText(status, text);
  };
  /** @param {LogLine[]} incoming */
  const addLines = (incoming) => {
    const lines = [];
    for (const l of incoming) {
      const key = lineKey(l);
      const skip = replaySkip.get(key);
      if (skip) {
        replaySkip.set(key, skip - 1);
        continue;
      }
      lines.push(l);
      shown.set(key, (shown.get(key) || 0) + 1);
      if (shown.size > 2 * MAX_TAIL_LINES) shown.delete(/** @type {string} */ (shown.keys().next().value));
    }
    if (!lines.length) return;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const l of lines) frag.append(logLine(l, true));
    box.append(frag);
    while (box.firstElementChild && box.childElementCount > MAX_TAIL_LINES) box.firstElementChild.remove();
    emptyMsg.hidden = true;
    if (atBottom) box.scrollTop = box.scrollHeight;
  };
  const stop = () => {
    if (controller) controller.abort();
    controller = null;
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
  };
  /** @param {string} why */
  const retry = (why) => {
    if (!pg.alive || paused) return;
    setStatus('retrying', `${why} Reconnecting in ${Math.round(backoff / 1000)} s…`);
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 15000);
  };
  const connect = async () => {
    retryTimer = null;
    if (!pg.alive || paused) return;
    const ctl = new AbortController();
    controller = ctl;
    setStatus('connecting', 'Connecting…');
    let resp;
    try {
      resp = await apiRaw('GET', `/v1/functions/${enc(name)}/logs?follow=true&limit=100`, undefined,
        { signal: ctl.signal, accept: 'text/event-stream' });
    } catch (e) {
      if (ctl.signal.aborted) return;
      if (isUnauthorized(e)) return;
      retry(errMessage(e));
      return;
    }
    if (!resp.ok) {
      const e = await errorFrom(resp);
      if (resp.status === 404 && e.code === 'not_found') {
        setStatus('error', e.message);
        return;
      }
      if (resp.status >= 400 && resp.status < 500 && resp.status !== 429) {
        setStatus('error', 'The live log stream is unavailable: ' + e.message);
        return;
      }
      retry(e.message);
      return;
    }
    if (!/text\/event-stream/.test(resp.headers.get('content-type') || '') || !resp.body) {
      setStatus('error', 'This server does not stream logs (it answered ' + (resp.headers.get('content-type') || 'no content type') + ').');
      return;
    }
    replaySkip = new Map(shown);
    setStatus('live', 'Live');
    backoff = 1000;
    try {
      await readEvents(resp.body, ctl.signal, (event, data) => {
        if (event !== 'log') return;
        try {
          addLines([JSON.parse(data)]);
        } catch {
          // A line that is not JSON is not ours to show.
        }
      });
      if (!ctl.signal.aborted) retry('The stream ended.');
    } catch (e) {
      if (ctl.signal.aborted) return;
      retry('The stream broke (' + errMessage(e) + ').');
    }
  };
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    setText(pauseBtn, paused ? 'Resume' : 'Pause');
    if (paused) {
      stop();
      setStatus('paused', 'Paused');
    } else {
      connect();
    }
  });
  clearBtn.addEventListener('click', () => {
    clear(box);
    emptyMsg.hidden = false;
  });
  pg.cleanups.push(stop);
  setStatus('idle', 'Not connected');
  return {
    el,
    /** Connects the first time the tab shows. */
    start() {
      if (started) return;
      started = true;
      connect();
    },
  };
}

/**
 * Reads a text/event-stream body, calling onEvent(event, data) for each event.
 * @param {ReadableStream<Uint8Array>} body
 * @param {AbortSignal} signal
 * @param {(event: string, data: string) => void} onEvent
 */
export async function readEvents(body, signal, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const onAbort = () => reader.cancel().catch(() => {});
  signal.addEventListener('abort', onAbort);
  let buf = '';
  let event = 'message';
  /** @type {string[]} */
  let data = [];
  /** @param {string} l */
  const line = (l) => {
    if (l === '') {
      if (data.length) onEvent(event, data.join('\n'));
      event = 'message';
      data = [];
      return;
    }
    if (l.startsWith(':')) return; // a keep-alive comment
    const i = l.indexOf(':');
    const fieldName = i < 0 ? l : l.slice(0, i);
    let value = i < 0 ? '' : l.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (fieldName === 'event') event = value;
    else if (fieldName === 'data') data.push(value);
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const l = buf.slice(0, nl);
        buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
        line(l);
      }
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
