// @ts-check
// The Metrics tab: totals and charts of invocations, errors, durations and cold starts over
// a chosen range, polled while the tab shows.

import { api, errMessage, isUnauthorized } from './api.js';
import { clear, enc, h } from './dom.js';
import { fmtCount, fmtMs } from './format.js';
import { poll } from './page.js';
import { bucket, chart } from './chart.js';
import { errorBox } from './widgets.js';

/**
 * @param {import('./page.js').Page} pg
 * @param {string} name the function's
 */
export function metricsPanel(pg, name) {
  const range = h('select', { testid: 'metrics-range', 'aria-label': 'Time range' },
    h('option', { value: '15' }, 'Last 15 minutes'),
    h('option', { value: '60', selected: true }, 'Last hour'),
    h('option', { value: '180' }, 'Last 3 hours'),
    h('option', { value: '1440' }, 'Last 24 hours'));
  const err = errorBox('metrics-error');
  const totals = h('div', { class: 'totals', testid: 'stats-totals' });
  const charts = h('div', { class: 'charts', testid: 'charts' });
  const el = h('div', {},
    h('div', { class: 'panel-head' }, h('h2', { class: 'sub' }, 'Metrics'), range),
    err.el, totals, charts);
  /** @type {import('./page.js').Poller | null} */
  let poller = null;
  const refresh = async () => {
    try {
      const s = await api('GET', `/v1/functions/${enc(name)}/stats?minutes=${range.value}`);
      if (!pg.alive) return;
      err.hide();
      renderStats(s);
    } catch (e) {
      if (!isUnauthorized(e)) err.show(errMessage(e));
    }
  };
  /** @param {{totals?: Record<string, number>, series?: import('./chart.js').Point[]}} s */
  const renderStats = (s) => {
    const tt = s.totals || {};
    clear(totals);
    /**
     * @param {string} label
     * @param {string} value
     * @param {string} testid
     */
    const total = (label, value, testid) => totals.append(h('div', { class: 'total', testid },
      h('span', { class: 'total-value' }, value), h('span', { class: 'total-label' }, label)));
    total('Invocations', fmtCount(tt.invocations), 'total-invocations');
    const rate = tt.invocations ? ` (${((100 * (tt.errors || 0)) / tt.invocations).toFixed(1)} %)` : '';
    total('Errors', fmtCount(tt.errors) + rate, 'total-errors');
    total('Cold starts', fmtCount(tt.cold_starts), 'total-cold-starts');
    total('Median duration', fmtMs(tt.p50_ms), 'total-p50');
    total('95th percentile', fmtMs(tt.p95_ms), 'total-p95');
    const series = bucket(s.series || [], 120);
    clear(charts).append(
      chart({ title: 'Invocations', testid: 'chart-invocations', series, key: 'invocations', kind: 'bar', cls: 'c-inv', fmt: fmtCount }),
      chart({ title: 'Errors', testid: 'chart-errors', series, key: 'errors', kind: 'bar', cls: 'c-err', fmt: fmtCount }),
      chart({ title: 'Average duration', testid: 'chart-duration', series, key: 'avg_ms', kind: 'line', cls: 'c-dur', fmt: fmtMs }),
      chart({ title: 'Cold starts', testid: 'chart-cold-starts', series, key: 'cold_starts', kind: 'bar', cls: 'c-cold', fmt: fmtCount }));
  };
  range.addEventListener('change', refresh);
  return {
    el,
    show() {
      if (!poller) poller = poll(pg, refresh, 10000);
    },
    hide() {
      if (poller) {
        poller.stop();
        poller = null;
      }
    },
  };
}
