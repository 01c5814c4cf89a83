// @ts-check
// The functions page: every function with its state, version, last hour's invocations and
// instances, refreshed every two seconds; what to do when there are none.

import { api, errMessage, isUnauthorized, token } from './api.js';
import { enc, h, setText } from './dom.js';
import { fmtCount, fmtInstances, fmtMs } from './format.js';
import { poll } from './page.js';
import { RUNTIME_LABELS } from './runtimes.js';
import { errorBox, pageHeader } from './widgets.js';

/** @typedef {{invocations: number, errors: number, p50_ms: number | null}} FunctionStats */

/**
 * @typedef {object} Row
 * @property {HTMLTableRowElement} tr
 * @property {Record<string, HTMLTableCellElement>} cells
 * @property {HTMLSpanElement} badge
 * @property {HTMLSpanElement} note
 */

/**
 * @param {import('./page.js').Page} pg
 * @param {HTMLElement} app
 */
export function listPage(pg, app) {
  document.title = 'Functions · Ignis';
  const createBtn = h('a', { class: 'btn btn-primary', href: '#/new', testid: 'create-function' }, 'Create function');
  const err = errorBox('list-error');
  const loading = h('p', { class: 'muted', testid: 'list-loading' }, 'Loading functions…');
  const statsNote = h('p', { class: 'muted small', testid: 'stats-note', hidden: true });
  const tbody = h('tbody', {});
  const table = h('table', { class: 'fn-table', testid: 'fn-list', hidden: true },
    h('caption', { class: 'visually-hidden' }, 'Functions, with invocations over the last hour'),
    h('thead', {}, h('tr', {},
      ['Name', 'Runtime', 'State', 'Version', 'Invocations (1 h)', 'Errors (1 h)', 'Median duration', 'Instances']
        .map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const empty = emptyState();
  empty.hidden = true;
  app.append(pageHeader('Functions', createBtn), err.el, loading, empty, table, statsNote);

  /** @type {Map<string, Row>} */
  const rows = new Map();
  /**
   * @param {string} label
   * @param {string} testid
   */
  const cell = (label, testid) => h('td', { 'data-label': label, testid });
  /**
   * @param {string} name
   * @returns {Row}
   */
  const makeRow = (name) => {
    const link = h('a', { href: '#/functions/' + enc(name), testid: 'fn-link' }, name);
    const cells = {
      name: h('td', { 'data-label': 'Name', class: 'fn-name' }, link),
      runtime: cell('Runtime', 'fn-runtime'),
      state: cell('State', 'fn-state-cell'),
      version: cell('Version', 'fn-version'),
      invocations: cell('Invocations (1 h)', 'fn-invocations'),
      errors: cell('Errors (1 h)', 'fn-errors'),
      p50: cell('Median duration', 'fn-p50'),
      instances: cell('Instances', 'fn-instances'),
    };
    const badge = h('span', { class: 'state', testid: 'fn-state' });
    const note = h('span', { class: 'state-note', testid: 'fn-state-note' });
    cells.state.append(badge, note);
    const tr = h('tr', { testid: 'fn-row', 'data-name': name }, Object.values(cells));
    return { tr, cells, badge, note };
  };

  /** @type {Record<string, FunctionStats> | null} */
  let stats = null;
  let statsError = '';
  let lastStatsAt = 0;
  const refresh = async () => {
    /** @type {import('./spec.js').FunctionView[]} */
    let fns;
    try {
      const [list] = await Promise.all([
        api('GET', '/v1/functions'),
        Date.now() - lastStatsAt > 4000 ? loadStats() : null,
      ]);
      fns = (list && list.functions) || [];
      err.hide();
    } catch (e) {
      if (isUnauthorized(e)) return;
      err.show(errMessage(e));
      return;
    } finally {
      loading.hidden = true;
    }
    if (!pg.alive) return;
    empty.hidden = fns.length > 0;
    table.hidden = fns.length === 0;
    statsNote.hidden = !statsError || fns.length === 0;
    setText(statsNote, statsError ? 'Invocation counts are unavailable: ' + statsError : '');
    const seen = new Set();
    /** @type {ChildNode | null} */
    let prev = null;
    for (const fn of fns) {
      seen.add(fn.name);
      let row = rows.get(fn.name);
      if (!row) {
        row = makeRow(fn.name);
        rows.set(fn.name, row);
      }
      updateRow(row, fn, stats ? stats[fn.name] || { invocations: 0, errors: 0, p50_ms: null } : null);
      // Keep the API's order without moving rows that are already in place (moving a
      // row would take the keyboard focus away from a link inside it).
      /** @type {ChildNode | null} */
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== row.tr) tbody.insertBefore(row.tr, want);
      prev = row.tr;
    }
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.tr.remove();
        rows.delete(name);
      }
    }
  };
  const loadStats = async () => {
    try {
      const s = await api('GET', '/v1/stats?minutes=60');
      stats = (s && s.functions) || {};
      statsError = '';
    } catch (e) {
      if (isUnauthorized(e)) throw e;
      statsError = errMessage(e);
      stats = null;
    }
    lastStatsAt = Date.now();
  };
  poll(pg, refresh, 2000);
}

/**
 * @param {Row} row
 * @param {import('./spec.js').FunctionView} fn
 * @param {FunctionStats | null} st
 */
function updateRow(row, fn, st) {
  const { cells, badge, note } = row;
  setText(cells.runtime, RUNTIME_LABELS[fn.runtime] || fn.runtime);
  setText(badge, fn.state);
  badge.className = 'state state-' + fn.state;
  let noteText = '';
  if (fn.deploy_error) {
    noteText = `Version ${fn.deploy_error.version} failed to load`;
  } else if (fn.state === 'error' && fn.state_reason) {
    noteText = fn.state_reason;
  }
  setText(note, noteText);
  note.hidden = !noteText;
  let version = 'v' + fn.version;
  if (fn.active_version != null && fn.active_version !== fn.version) version += ` (v${fn.active_version} serving)`;
  setText(cells.version, version);
  setText(cells.invocations, st ? fmtCount(st.invocations) : '—');
  setText(cells.errors, st ? fmtCount(st.errors) : '—');
  cells.errors.classList.toggle('has-errors', !!(st && st.errors));
  setText(cells.p50, st && st.p50_ms != null ? fmtMs(st.p50_ms) : '—');
  setText(cells.instances, fmtInstances(fn.instances));
}

/** What the page shows without functions: how to make one here, with curl or the CLI. */
function emptyState() {
  const origin = location.origin;
  const auth = token() ? ' \\\n  -H "Authorization: Bearer $IGNIS_TOKEN"' : '';
  const curl = [
    `curl -s -X POST '${origin}/v1/functions?wait=true'${auth} \\`,
    `  -H 'content-type: application/json' \\`,
    `  -d '{"name": "hello", "runtime": "python",`,
    `       "code": "def handler(event):\\n    return {\\"message\\": \\"Hello!\\"}\\n"}'`,
  ].join('\n');
  const cli = [
    `export IGNIS_URL=${origin}`,
    token() ? 'export IGNIS_TOKEN=…   # the server\'s token' : null,
    'ignis fn create hello --runtime python --file hello.py',
    'ignis fn invoke hello --data \'{"name": "Ada"}\'',
  ].filter(Boolean).join('\n');
  return h('div', { class: 'empty card', testid: 'empty-state' },
    h('h2', {}, 'No functions yet'),
    h('p', {}, 'A function is a small handler written in Python, JavaScript or TypeScript. ',
      'Ignis runs it in a sandbox whenever it is invoked, keeps instances warm, and records every call with its logs.'),
    h('p', {}, h('a', { class: 'btn btn-primary', href: '#/new', testid: 'create-first' }, 'Create your first function'),
      ' ', h('a', { class: 'btn', href: '#/playground' }, 'Try code in the playground')),
    h('h3', { class: 'sub' }, 'Or from a terminal, with curl'),
    h('pre', { class: 'code-block', tabindex: '0', testid: 'empty-curl' }, curl),
    h('h3', { class: 'sub' }, 'Or with the ignis CLI'),
    h('pre', { class: 'code-block', tabindex: '0', testid: 'empty-cli' }, cli));
}
