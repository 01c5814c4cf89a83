// @ts-check
// The Invocations tab: the last 50 invocations (polled while the tab shows), each opening
// to its facts, error and logs.

import { api, errMessage, isUnauthorized } from './api.js';
import { clear, enc, h, setText, uid } from './dom.js';
import { fmtDateTime, fmtMs } from './format.js';
import { poll } from './page.js';
import { logLines } from './response.js';
import { errorBox } from './widgets.js';

/**
 * An invocation as the API lists it.
 * @typedef {object} Invocation
 * @property {string} id
 * @property {string} started_at
 * @property {string} status
 * @property {number | null} [duration_ms]
 * @property {boolean} [cold_start]
 * @property {number} version
 * @property {{type?: string, message?: string, stack?: string} | null} [error]
 */

/**
 * A cold start's parts as the API gives them (milliseconds); `boot_ms` and `restore_ms`
 * only for a virtual machine (both within `runtime_ms`).
 * @typedef {object} ColdStart
 * @property {string} [reason]
 * @property {number} [init_ms]
 * @property {number} [sandbox_ms]
 * @property {number} [runtime_ms]
 * @property {number | null} [boot_ms]
 * @property {number | null} [restore_ms]
 * @property {number} [load_ms]
 */

/**
 * A cold start, part by part: "12.3 ms (first_call): sandbox 1 ms · runtime 9 ms (boot
 * 8 ms) · load 2 ms".
 * @param {ColdStart} init
 * @returns {string}
 */
export function coldStartAnatomy(init) {
  /** @type {string[]} */
  const parts = [];
  if (init.sandbox_ms != null) parts.push('sandbox ' + fmtMs(init.sandbox_ms));
  if (init.runtime_ms != null) {
    /** @type {string[]} */
    const vm = [];
    if (init.boot_ms != null) vm.push('boot ' + fmtMs(init.boot_ms));
    if (init.restore_ms != null) vm.push('restore ' + fmtMs(init.restore_ms));
    parts.push('runtime ' + fmtMs(init.runtime_ms) + (vm.length ? ` (${vm.join(', ')})` : ''));
  }
  if (init.load_ms != null) parts.push('load ' + fmtMs(init.load_ms));
  const total = init.init_ms != null ? fmtMs(init.init_ms) : '';
  const reason = init.reason ? ` (${init.reason})` : '';
  return `${total}${reason}${parts.length ? ': ' + parts.join(' · ') : ''}`;
}

/**
 * @typedef {object} Row
 * @property {HTMLDivElement} row
 * @property {Record<'time' | 'status' | 'duration' | 'start' | 'version' | 'error', HTMLSpanElement>} summary
 */

/**
 * @param {import('./page.js').Page} pg
 * @param {string} name the function's
 */
export function invocationHistory(pg, name) {
  const list = h('div', { class: 'inv-list', testid: 'invocations' });
  const err = errorBox('invocations-error');
  const refreshBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'invocations-refresh' }, 'Refresh');
  const emptyMsg = h('p', { class: 'muted', testid: 'invocations-empty', hidden: true }, 'No invocations yet. Invoke the function from the Code tab.');
  const el = h('div', {},
    h('div', { class: 'panel-head' }, h('h2', { class: 'sub' }, 'Recent invocations'), refreshBtn),
    err.el, emptyMsg, list);
  /** @type {Map<string, Row>} */
  const rows = new Map();
  let visible = false;
  /** @type {import('./page.js').Poller | null} */
  let poller = null;

  /**
   * @param {Invocation} inv
   * @returns {Row}
   */
  const makeRow = (inv) => {
    const detailId = uid('inv');
    const detail = h('div', { class: 'inv-detail', hidden: true, testid: 'invocation-detail', id: detailId });
    const toggle = h('button', { type: 'button', class: 'inv-toggle', 'aria-expanded': 'false', 'aria-controls': detailId, testid: 'invocation-toggle' });
    const summary = {
      time: h('span', { class: 'inv-time' }),
      status: h('span', { class: 'pill' }),
      duration: h('span', { class: 'inv-dur' }),
      start: h('span', { class: 'inv-start' }),
      version: h('span', { class: 'inv-version' }),
      error: h('span', { class: 'inv-error' }),
    };
    toggle.append(h('span', { class: 'chev', 'aria-hidden': 'true' }), ...Object.values(summary));
    const row = h('div', { class: 'inv-row', testid: 'invocation', 'data-id': inv.id }, toggle, detail);
    toggle.addEventListener('click', async () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', open ? 'true' : 'false');
      detail.hidden = !open;
      if (open) await loadDetail(inv.id, detail);
    });
    return { row, summary };
  };
  /**
   * @param {Row} r
   * @param {Invocation} inv
   */
  const fillRow = (r, inv) => {
    const s = r.summary;
    setText(s.time, fmtDateTime(inv.started_at));
    setText(s.status, inv.status);
    const pending = inv.status === 'queued' || inv.status === 'running';
    s.status.className = 'pill ' + (inv.status === 'succeeded' ? 'pill-good' : pending ? 'pill-quiet' : 'pill-bad');
    setText(s.duration, fmtMs(inv.duration_ms));
    setText(s.start, inv.cold_start ? 'cold' : 'warm');
    setText(s.version, 'v' + inv.version);
    setText(s.error, inv.error ? `${inv.error.type ? inv.error.type + ': ' : ''}${inv.error.message || ''}` : '');
  };
  /**
   * @param {string} id
   * @param {HTMLElement} detail
   */
  const loadDetail = async (id, detail) => {
    clear(detail).append(h('p', { class: 'muted small' }, 'Loading…'));
    try {
      const inv = await api('GET', '/v1/invocations/' + enc(id));
      clear(detail);
      const facts = h('dl', { class: 'facts' });
      /**
       * @param {string} k
       * @param {unknown} v
       */
      const fact = (k, v) => {
        if (v != null && v !== '') facts.append(h('dt', {}, k), h('dd', {}, String(v)));
      };
      fact('Invocation', inv.id);
      fact('Started', inv.started_at);
      fact('Duration', fmtMs(inv.duration_ms));
      fact('Billed', inv.billed_ms != null ? inv.billed_ms + ' ms' : null);
      fact('Start', inv.cold_start ? 'cold' : 'warm');
      if (inv.init && typeof inv.init === 'object') {
        facts.append(h('dt', {}, 'Init'), h('dd', { testid: 'invocation-init' }, coldStartAnatomy(inv.init)));
      }
      fact('Memory', inv.peak_memory_mb != null ? `${inv.peak_memory_mb} MB of ${inv.memory_mb} MB` : null);
      detail.append(facts);
      if (inv.error) {
        detail.append(h('h3', { class: 'sub' }, 'Error'),
          h('pre', { class: 'code-block error-text', tabindex: '0' },
            `${inv.error.type ? inv.error.type + ': ' : ''}${inv.error.message || ''}${inv.error.stack ? '\n\n' + inv.error.stack : ''}`));
      }
      detail.append(h('h3', { class: 'sub' }, 'Logs'), logLines(inv.logs, 'invocation-logs'));
    } catch (e) {
      clear(detail).append(h('p', { class: 'form-error' }, errMessage(e)));
    }
  };
  const refresh = async () => {
    try {
      const data = await api('GET', `/v1/functions/${enc(name)}/invocations?limit=50`);
      if (!pg.alive) return;
      err.hide();
      /** @type {Invocation[]} */
      const invs = (data && data.invocations) || [];
      emptyMsg.hidden = invs.length > 0;
      /** @type {ChildNode | null} */
      let prev = null;
      const seen = new Set();
      for (const inv of invs) {
        seen.add(inv.id);
        let r = rows.get(inv.id);
        if (!r) {
          r = makeRow(inv);
          rows.set(inv.id, r);
        }
        fillRow(r, inv);
        /** @type {ChildNode | null} */
        const want = prev ? prev.nextSibling : list.firstChild;
        if (want !== r.row) list.insertBefore(r.row, want);
        prev = r.row;
      }
      for (const [id, r] of rows) {
        if (!seen.has(id)) {
          r.row.remove();
          rows.delete(id);
        }
      }
    } catch (e) {
      if (!isUnauthorized(e)) err.show(errMessage(e));
    }
  };
  refreshBtn.addEventListener('click', refresh);
  return {
    el,
    /** Refreshes now if the tab shows. */
    refresh() {
      if (visible) refresh();
    },
    show() {
      visible = true;
      if (!poller) poller = poll(pg, refresh, 5000);
    },
    hide() {
      visible = false;
      if (poller) {
        poller.stop();
        poller = null;
      }
    },
  };
}
