// @ts-check
// The Configuration tab: memory, timeout, handler, network, isolation and environment; saving makes
// a new version with the deployed code.

import { errMessage } from './api.js';
import { clear, h, setText } from './dom.js';
import { numberOrText } from './format.js';
import { isolationOptions, microvmUnavailable } from './runtimes.js';
import { envEditor, errorBox, field } from './widgets.js';

/** @typedef {import('./spec.js').FunctionView} FunctionView */

/**
 * @param {import('./page.js').Page} pg
 * @param {() => FunctionView} current the function as last shown
 * @param {(changes: Record<string, unknown>) => Promise<{version: number}>} save stores a new version
 */
export function configPanel(pg, current, save) {
  const memory = h('input', { type: 'number', min: '128', max: '3072', step: '1', testid: 'config-memory', inputmode: 'numeric' });
  const timeout = h('input', { type: 'number', min: '1', max: '300', step: '1', testid: 'config-timeout', inputmode: 'numeric' });
  const handler = h('input', { type: 'text', spellcheck: 'false', autocapitalize: 'off', testid: 'config-handler' });
  const network = h('select', { testid: 'config-network' },
    h('option', { value: 'none' }, 'None (loopback only)'),
    h('option', { value: 'outbound' }, 'Outbound internet'));
  const isolation = h('select', { testid: 'config-isolation' });
  const why = microvmUnavailable();
  const isolationHelp = why
    ? 'microvm is unavailable on this server: ' + why
    : 'Each microvm instance runs in its own virtual machine.';
  const envBox = h('div', {});
  const err = errorBox('config-error');
  const ok = h('p', { class: 'ok-text', role: 'status', testid: 'config-saved' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'config-save' }, 'Save configuration');
  const reset = h('button', { type: 'button', class: 'btn' }, 'Discard changes');
  const form = h('form', { class: 'config-form', novalidate: true },
    h('p', { class: 'muted' }, 'Saving makes a new version with the deployed code (changes in the editor that are not deployed stay in the editor).'),
    h('div', { class: 'form-grid' },
      field('Memory (MB)', memory, '128 to 3072.'),
      field('Timeout (seconds)', timeout, '1 to 300.'),
      field('Handler', handler, 'The function the runtime calls.'),
      field('Network', network),
      field('Isolation', isolation, isolationHelp)),
    envBox, err.el, ok,
    h('div', { class: 'actions' }, submit, reset));
  let env = envEditor({});
  /** @type {number | null} */
  let shownVersion = null;
  let touched = false;
  form.addEventListener('input', () => {
    touched = true;
  });
  /** @param {FunctionView} fn */
  const fill = (fn) => {
    memory.value = String(fn.memory_mb);
    timeout.value = String(fn.timeout_secs);
    handler.value = fn.handler || 'handler';
    network.value = fn.network || 'none';
    isolationOptions(isolation, fn.isolation || 'process');
    env = envEditor(fn.env || {});
    clear(envBox).append(env.el);
    shownVersion = fn.version;
    touched = false;
  };
  reset.addEventListener('click', () => {
    fill(current());
    err.hide();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hide();
    setText(ok, '');
    let changes;
    try {
      changes = {
        memory_mb: numberOrText(memory.value),
        timeout_secs: numberOrText(timeout.value),
        handler: handler.value.trim() || 'handler',
        network: network.value,
        isolation: isolation.value,
        env: env.value(),
      };
    } catch (e) {
      err.show(errMessage(e));
      return;
    }
    submit.disabled = true;
    try {
      const updated = await save(changes);
      if (!pg.alive) return;
      touched = false;
      shownVersion = updated.version;
      setText(ok, `Saved as version ${updated.version}.`);
    } catch (e) {
      if (pg.alive) err.show(errMessage(e));
    } finally {
      submit.disabled = false;
    }
  });
  return {
    el: form,
    /**
     * Refills from the server unless the user is editing the form.
     * @param {FunctionView} fn
     */
    update(fn) {
      if (shownVersion === null || (!touched && shownVersion !== fn.version)) fill(fn);
    },
  };
}
