// @ts-check
// Hand-drawn SVG charts of per-minute series: bars for counts, a line for durations, with
// a text description for screen readers.

import { h, svg, uid } from './dom.js';
import { fmtClock, fmtCount } from './format.js';

/**
 * One minute (or, after `bucket`, a run of minutes) of a function's stats.
 * @typedef {object} Point
 * @property {string} at
 * @property {string} [until]
 * @property {number} invocations
 * @property {number} errors
 * @property {number} cold_starts
 * @property {number | null} avg_ms
 */

/**
 * Merges minute points into at most `max` buckets (sums; durations weighted by count).
 * @param {Point[]} series
 * @param {number} max
 * @returns {Point[]}
 */
export function bucket(series, max) {
  if (series.length <= max) return series;
  const size = Math.ceil(series.length / max);
  const out = [];
  for (let i = 0; i < series.length; i += size) {
    const group = series.slice(i, i + size);
    /** @type {Point} */
    const b = { at: group[0].at, until: group[group.length - 1].at, invocations: 0, errors: 0, cold_starts: 0, avg_ms: null };
    let weighted = 0;
    for (const p of group) {
      b.invocations += p.invocations || 0;
      b.errors += p.errors || 0;
      b.cold_starts += p.cold_starts || 0;
      if (p.avg_ms != null && p.invocations) weighted += p.avg_ms * p.invocations;
    }
    b.avg_ms = b.invocations ? weighted / b.invocations : null;
    out.push(b);
  }
  return out;
}

/**
 * @typedef {object} ChartSpec
 * @property {string} title
 * @property {string} testid
 * @property {Point[]} series
 * @property {'invocations' | 'errors' | 'cold_starts' | 'avg_ms'} key
 * @property {'bar' | 'line'} kind
 * @property {string} cls
 * @property {(v: number) => string} fmt
 */

/**
 * A hand-drawn SVG bar or line chart of series[i][key] over time.
 * @param {ChartSpec} spec
 */
export function chart({ title, testid, series, key, kind, cls, fmt }) {
  // Narrow screens get a narrower drawing, so its labels keep a readable size.
  const W = window.innerWidth < 640 ? 380 : 600;
  const H = window.innerWidth < 640 ? 190 : 170;
  const m = { left: 56, right: 10, top: 12, bottom: 26 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const values = series.map((p) => (p[key] == null ? null : Number(p[key])));
  const maxVal = Math.max(0, ...values.filter((v) => v != null));
  const top = kind === 'bar' ? countMax(maxVal) : niceMax(maxVal);
  const titleId = uid('chart');
  const descId = uid('chartdesc');
  const total = values.reduce((/** @type {number} */ a, v) => a + (v || 0), 0);
  const desc = kind === 'bar'
    ? `${fmt(total)} in total over ${series.length} intervals; at most ${fmt(maxVal)} in one.`
    : (maxVal ? `Highest average ${fmt(maxVal)}.` : 'No invocations in this range.');
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart-svg ' + cls, role: 'img',
    'aria-labelledby': titleId, 'aria-describedby': descId, preserveAspectRatio: 'xMidYMid meet',
  });
  // Grid lines and y labels at 0, half and the top.
  for (const f of [0, 0.5, 1]) {
    const y = m.top + ph - f * ph;
    root.append(svg('line', { x1: m.left, x2: W - m.right, y1: y, y2: y, class: 'grid' }));
    const label = kind === 'bar' ? fmtCount(top * f) : (f === 0 ? '0' : fmt(top * f));
    root.append(svg('text', { x: m.left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, label));
  }
  const n = Math.max(series.length, 1);
  const step = pw / n;
  /** @param {number} i */
  const x = (i) => m.left + i * step;
  /** @param {number} v */
  const y = (v) => m.top + ph - (top ? (v / top) * ph : 0);
  /**
   * @param {Point} p
   * @param {number | null} v
   */
  const pointLabel = (p, v) => `${fmtClock(p.at)}${p.until && p.until !== p.at ? '–' + fmtClock(p.until) : ''}: ${v == null ? 'no invocations' : fmt(v)}`;
  if (kind === 'bar') {
    series.forEach((p, i) => {
      const v = values[i] || 0;
      if (!v) return;
      const bh = Math.max(1, y(0) - y(v));
      root.append(svg('rect', {
        x: x(i) + Math.min(1, step * 0.15), y: y(0) - bh, width: Math.max(0.5, step - Math.min(2, step * 0.3)), height: bh, class: 'bar',
      }, svg('title', {}, pointLabel(p, v))));
    });
  } else {
    // A line through the minutes that had invocations; gaps where there were none.
    let d = '';
    let open = false;
    series.forEach((p, i) => {
      const v = values[i];
      const cx = x(i) + step / 2;
      if (v == null) {
        open = false;
        return;
      }
      d += `${open ? 'L' : 'M'}${cx.toFixed(1)},${y(v).toFixed(1)}`;
      open = true;
      root.append(svg('circle', { cx: cx.toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: 'dot' }, svg('title', {}, pointLabel(p, v))));
    });
    if (d) root.insertBefore(svg('path', { d, class: 'line' }), root.querySelector('circle'));
  }
  // Time labels: start, middle, end.
  if (series.length) {
    /**
     * @param {number} i
     * @param {string} anchor
     */
    const at = (i, anchor) => root.append(svg('text', { x: i === 0 ? m.left : (i === series.length - 1 ? W - m.right : x(i) + step / 2), y: H - 8, class: 'axis', 'text-anchor': anchor }, fmtClock(series[i].at)));
    at(0, 'start');
    if (series.length > 2) at(Math.floor(series.length / 2), 'middle');
    at(series.length - 1, 'end');
  }
  return h('figure', { class: 'chart', testid },
    h('figcaption', { id: titleId }, title),
    root,
    h('p', { class: 'visually-hidden', id: descId }, desc));
}

/**
 * A top for counts whose half is a whole number too.
 * @param {number} v
 */
function countMax(v) {
  if (v <= 2) return 2;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const f of [2, 4, 6, 8, 10]) {
    if (v <= f * exp) return f * exp;
  }
  return 10 * exp;
}

/**
 * A round top for durations.
 * @param {number} v
 */
function niceMax(v) {
  if (!v || v <= 0) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(v)));
  for (const f of [1, 2, 2.5, 5, 10]) {
    if (v <= f * exp) return f * exp;
  }
  return 10 * exp;
}
