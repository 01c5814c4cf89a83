// @ts-check
// Shared widgets: toasts, labelled fields, error boxes, the environment editor, tabs and
// page headings.

import { byId, h, setText, uid } from './dom.js';

/**
 * A short message in the corner that goes by itself.
 * @param {string} message
 * @param {'error'} [kind]
 */
export function toast(message, kind) {
  const el = h('div', { class: 'toast' + (kind === 'error' ? ' toast-error' : ''), testid: 'toast' }, message);
  byId('toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

/**
 * A labelled input with optional help text (linked with aria-describedby).
 * @param {string} label
 * @param {HTMLElement} input
 * @param {string} [help]
 */
export function field(label, input, help) {
  if (!input.id) input.id = uid('f');
  const kids = [h('label', { for: input.id }, label), input];
  if (help) {
    const helpId = uid('help');
    input.setAttribute('aria-describedby', helpId);
    kids.push(h('p', { class: 'help', id: helpId }, help));
  }
  return h('div', { class: 'field' }, kids);
}

/**
 * @typedef {object} ErrorBox
 * @property {HTMLDivElement} el
 * @property {(message: string) => void} show
 * @property {() => void} hide
 */

/**
 * An alert box, hidden until it has something to say.
 * @param {string} [testid]
 * @returns {ErrorBox}
 */
export function errorBox(testid) {
  const el = h('div', { class: 'error-box', role: 'alert', testid: testid || 'error', hidden: true });
  return {
    el,
    show(message) {
      el.hidden = false;
      setText(el, message);
    },
    hide() {
      el.hidden = true;
    },
  };
}

/**
 * Key/value rows for environment variables.
 * @param {Record<string, string>} initial
 */
export function envEditor(initial) {
  const rows = h('div', { class: 'env-rows', testid: 'env-rows' });
  /**
   * @param {string} key
   * @param {string} value
   */
  const addRow = (key, value) => {
    const k = h('input', { type: 'text', class: 'env-key', value: key || '', placeholder: 'NAME', 'aria-label': 'Variable name', spellcheck: 'false', autocapitalize: 'off' });
    const v = h('input', { type: 'text', class: 'env-value', value: value || '', placeholder: 'value', 'aria-label': 'Value', spellcheck: 'false', autocapitalize: 'off' });
    const row = h('div', { class: 'env-row', testid: 'env-row' }, k, v);
    const remove = h('button', {
      type: 'button', class: 'btn btn-quiet btn-small', 'aria-label': 'Remove this variable',
      onclick: () => {
        const next = row.nextElementSibling || row.previousElementSibling;
        row.remove();
        const input = next && next.querySelector('input');
        if (input) input.focus();
        else addButton.focus();
      },
    }, 'Remove');
    row.append(remove);
    rows.append(row);
    return k;
  };
  const addButton = h('button', {
    type: 'button', class: 'btn btn-small', testid: 'env-add',
    onclick: () => addRow('', '').focus(),
  }, 'Add variable');
  for (const [k, v] of Object.entries(initial || {})) addRow(k, v);
  const el = h('fieldset', { class: 'env' },
    h('legend', {}, 'Environment variables'),
    rows, addButton);
  return {
    el,
    /**
     * The variables as an object; throws a readable Error for a duplicate or nameless row.
     * @returns {Record<string, string>}
     */
    value() {
      /** @type {Record<string, string>} */
      const out = {};
      for (const row of rows.querySelectorAll('.env-row')) {
        const key = /** @type {HTMLInputElement} */ (row.querySelector('.env-key')).value.trim();
        const val = /** @type {HTMLInputElement} */ (row.querySelector('.env-value')).value;
        if (!key && !val) continue;
        if (!key) throw new Error('An environment variable has a value but no name.');
        if (Object.prototype.hasOwnProperty.call(out, key)) throw new Error(`The environment variable ${key} is listed twice.`);
        out[key] = val;
      }
      return out;
    },
  };
}

/**
 * A row of tabs (buttons with aria-selected) over panels; arrow keys move between tabs.
 * @param {Array<{id: string, label: string}>} defs
 * @param {(id: string) => void} onSelect
 */
export function tabs(defs, onSelect) {
  const list = h('div', { class: 'tabs', role: 'tablist' });
  /** @type {HTMLElement[]} */
  const panels = [];
  /** @type {HTMLButtonElement[]} */
  const buttons = [];
  /**
   * @param {string} id
   * @param {boolean} focus
   */
  const select = (id, focus) => {
    for (const b of buttons) {
      const on = b.dataset.tab === id;
      b.setAttribute('aria-selected', on ? 'true' : 'false');
      b.tabIndex = on ? 0 : -1;
      if (on && focus) b.focus();
    }
    for (const p of panels) p.hidden = p.dataset.tab !== id;
    onSelect(id);
  };
  for (const def of defs) {
    const tabId = uid('tab');
    const panelId = uid('panel');
    const b = h('button', {
      type: 'button', role: 'tab', id: tabId, 'aria-controls': panelId, class: 'tab',
      testid: 'tab-' + def.id, 'aria-selected': 'false',
      onclick: () => select(def.id, false),
    }, def.label);
    b.dataset.tab = def.id;
    buttons.push(b);
    list.append(b);
    const p = h('section', { role: 'tabpanel', id: panelId, 'aria-labelledby': tabId, class: 'tabpanel', testid: 'panel-' + def.id, hidden: true });
    p.dataset.tab = def.id;
    panels.push(p);
  }
  list.addEventListener('keydown', (ev) => {
    const i = buttons.indexOf(/** @type {HTMLButtonElement} */ (document.activeElement));
    if (i < 0) return;
    let j = null;
    if (ev.key === 'ArrowRight') j = (i + 1) % buttons.length;
    else if (ev.key === 'ArrowLeft') j = (i - 1 + buttons.length) % buttons.length;
    else if (ev.key === 'Home') j = 0;
    else if (ev.key === 'End') j = buttons.length - 1;
    if (j == null) return;
    ev.preventDefault();
    select(buttons[j].dataset.tab || '', true);
  });
  /**
   * The panel of a tab.
   * @param {string} id
   */
  const panel = (id) => {
    const p = panels.find((q) => q.dataset.tab === id);
    if (!p) throw new Error(`no tab ${id}`);
    return p;
  };
  return { list, panels, select, panel };
}

/**
 * A page's heading with its actions beside it.
 * @param {string} title
 * @param {...HTMLElement} actions
 */
export function pageHeader(title, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', {}, title), h('div', { class: 'page-actions' }, actions));
}
