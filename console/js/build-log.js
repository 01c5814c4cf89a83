// @ts-check
// The build of a function's newest version (its dependencies installed by uv or Bun): the
// installer's log, live while the version builds (GET …/versions/{v}/build?follow=true, an
// SSE stream of `log` lines and one `end`), and kept in view when the build failed.

import { apiRaw, errMessage, errorFrom, isUnauthorized } from './api.js';
import { enc, h, setText } from './dom.js';
import { readEvents } from './tab-logs.js';

/** @typedef {import('./spec.js').FunctionView} FunctionView */

/**
 * A build as the `end` event (or GET …/build) describes it, without its log.
 * @typedef {object} BuildView
 * @property {number} version
 * @property {'none' | 'running' | 'succeeded' | 'failed' | 'cached'} status
 * @property {'uv' | 'bun' | null} [installer]
 * @property {string | null} [error]
 */

const MAX_LINES = 5000;

/**
 * @param {import('./page.js').Page} pg
 * @param {string} name the function's
 * @param {(build: BuildView) => void} [onEnd] called when a followed build ended
 */
export function buildLog(pg, name, onEnd) {
  const title = h('span', { testid: 'build-title' });
  const status = h('span', { class: 'tail-status', testid: 'build-status', role: 'status' });
  const text = h('pre', { class: 'log-box build-text', testid: 'build-log-text', tabindex: '0', role: 'log', 'aria-label': 'Build log' });
  const errorEl = h('p', { class: 'form-error', testid: 'build-error', hidden: true });
  const details = h('details', { class: 'build-log card', testid: 'build-log', hidden: true, open: true },
    h('summary', {}, title, ' ', status), errorEl, text);
  /** The version shown. @type {number | null} */
  let version = null;
  /** @type {AbortController | null} */
  let controller = null;
  /** @type {BuildView | null} */
  let ended = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let retryTimer = null;

  /**
   * @param {string} state
   * @param {string} label
   */
  const setStatus = (state, label) => {
    status.dataset.state = state;
    status.className = 'tail-status tail-' + state;
    setText(status, label);
  };
  const stop = () => {
    if (controller) controller.abort();
    controller = null;
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
  };
  /** @param {string} line */
  const addLine = (line) => {
    const atBottom = text.scrollHeight - text.scrollTop - text.clientHeight < 40;
    text.append(line + '\n');
    while (text.childNodes.length > MAX_LINES && text.firstChild) text.firstChild.remove();
    if (atBottom) text.scrollTop = text.scrollHeight;
  };
  /** @param {BuildView} b */
  const end = (b) => {
    ended = b;
    const by = b.installer ? ` (${b.installer})` : '';
    if (b.status === 'failed') {
      setStatus('error', `Failed${by}`);
      details.open = true;
    } else if (b.status === 'succeeded' || b.status === 'cached') {
      setStatus('done', b.status === 'cached' ? `Installed from the cache${by}` : `Succeeded${by}`);
    } else {
      // Nothing was installed: there is no build to show.
      setStatus('done', 'Nothing to install');
      details.hidden = true;
    }
    errorEl.hidden = !b.error;
    setText(errorEl, b.error || '');
    if (onEnd) onEnd(b);
  };

  /** @param {number} v */
  const connect = async (v) => {
    retryTimer = null;
    if (!pg.alive || v !== version) return;
    const ctl = new AbortController();
    controller = ctl;
    // The stream sends the whole log from its start: a reconnect starts over.
    text.replaceChildren();
    setStatus('connecting', 'Connecting…');
    try {
      const resp = await apiRaw('GET', `/v1/functions/${enc(name)}/versions/${v}/build?follow=true`, undefined,
        { signal: ctl.signal, accept: 'text/event-stream' });
      if (!resp.ok) {
        const e = await errorFrom(resp);
        setStatus('error', 'The build log is unavailable: ' + e.message);
        return;
      }
      if (!/text\/event-stream/.test(resp.headers.get('content-type') || '') || !resp.body) {
        setStatus('error', 'This server does not stream build logs (it answered ' + (resp.headers.get('content-type') || 'no content type') + ').');
        return;
      }
      setStatus('live', 'Building…');
      await readEvents(resp.body, ctl.signal, (event, data) => {
        if (event === 'log') addLine(data);
        else if (event === 'end') {
          try {
            end(JSON.parse(data));
          } catch (e) {
            setStatus('error', 'The build ended with an answer that is not JSON: ' + errMessage(e));
          }
        }
      });
      if (!ended && !ctl.signal.aborted) {
        setStatus('retrying', 'The stream ended before the build did. Reconnecting…');
        retryTimer = setTimeout(() => connect(v), 1000);
      }
    } catch (e) {
      if (ctl.signal.aborted || isUnauthorized(e)) return;
      setStatus('retrying', `The stream broke (${errMessage(e)}). Reconnecting…`);
      retryTimer = setTimeout(() => connect(v), 2000);
    }
  };

  /** @param {number} v */
  const follow = (v) => {
    if (version === v) return;
    stop();
    version = v;
    ended = null;
    errorEl.hidden = true;
    details.hidden = false;
    details.open = true;
    setText(title, `Build of version ${v}`);
    connect(v);
  };

  pg.cleanups.push(stop);
  return {
    el: details,
    /**
     * Follows the newest version's build while it runs, and shows a failed one; a newer
     * version without a build hides the log.
     * @param {FunctionView} fn
     * @param {boolean} failed whether the newest version failed without a load error (its
     *   build may have failed)
     */
    update(fn, failed) {
      if (fn.state === 'building' || (failed && version !== fn.version)) {
        follow(fn.version);
      } else if (version != null && version !== fn.version) {
        stop();
        version = null;
        details.hidden = true;
      }
    },
    /** The end of the build shown, once it ended. */
    ended: () => ended,
  };
}
