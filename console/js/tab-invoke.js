// @ts-check
// The test panel beside the code: an event (typed or one of the saved test events),
// Invoke, and what the function answered with its logs.

import { api, apiRaw, errMessage, isStatus, isUnauthorized } from './api.js';
import { clear, enc, h, setText, uid } from './dom.js';
import { clip, decodeBody, prettyBody } from './format.js';
import { wait } from './page.js';
import { logLines, responseView } from './response.js';
import { DEFAULT_EVENT } from './runtimes.js';
import { errorBox } from './widgets.js';

/** @typedef {{name: string, event: unknown}} TestEvent */

/**
 * @param {import('./page.js').Page} pg
 * @param {string} name the function's
 */
export function invokePanel(pg, name) {
  const path = '/v1/functions/' + enc(name);
  const select = h('select', { testid: 'event-select', 'aria-label': 'Saved test events' });
  const eventName = h('input', { type: 'text', placeholder: 'event name', testid: 'event-name', spellcheck: 'false', autocapitalize: 'off', 'aria-label': 'Test event name' });
  const saveBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'event-save' }, 'Save event');
  const deleteBtn = h('button', { type: 'button', class: 'btn btn-small btn-quiet', testid: 'event-delete', disabled: true }, 'Delete');
  const eventsMsg = h('p', { class: 'muted small', testid: 'events-message', role: 'status' });
  const area = h('textarea', {
    class: 'code-textarea event-editor', rows: 8, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off',
    testid: 'event-editor', id: uid('event'),
  });
  area.value = DEFAULT_EVENT;
  const jsonMsg = h('p', { class: 'form-error small', testid: 'event-json-error', hidden: true, role: 'alert' });
  const invokeBtn = h('button', { type: 'button', class: 'btn btn-primary', testid: 'invoke' }, 'Invoke');
  const err = errorBox('invoke-error');
  const resp = responseView('invoke');
  const logsBox = h('div', { testid: 'invoke-logs' });
  const logsWrap = h('div', { hidden: true }, h('h3', { class: 'sub' }, 'Logs'), logsBox);
  const el = h('section', { class: 'invoke card', 'aria-labelledby': 'invoke-title', testid: 'invoke-panel' },
    h('h2', { class: 'sub', id: 'invoke-title' }, 'Test'),
    h('div', { class: 'events-bar' }, select, eventName, saveBtn, deleteBtn),
    eventsMsg,
    h('label', { for: area.id }, 'Event (JSON)'),
    area, jsonMsg,
    h('div', { class: 'actions' }, invokeBtn, h('span', { class: 'muted small' }, 'or Ctrl+Enter (⌘Enter)')),
    err.el, resp.el, logsWrap);
  const panel = {
    el,
    /** Called after each invocation (the history refreshes). @type {(() => void) | null} */
    onInvoked: null,
    run: () => invokeBtn.click(),
  };

  /** @type {TestEvent[]} */
  let events = [];
  /** @param {string} [selected] */
  const fillSelect = (selected) => {
    clear(select);
    select.append(h('option', { value: '' }, events.length ? 'Saved events…' : 'No saved events'));
    for (const e of events) select.append(h('option', { value: e.name }, e.name));
    select.value = selected && events.some((e) => e.name === selected) ? selected : '';
    deleteBtn.disabled = !select.value;
  };
  /** @param {string} [selected] */
  const loadEvents = async (selected) => {
    try {
      const data = await api('GET', path + '/test-events');
      events = (data && data.test_events) || [];
      fillSelect(selected);
      setText(eventsMsg, '');
    } catch (e) {
      if (isUnauthorized(e)) return;
      events = [];
      fillSelect();
      setText(eventsMsg, 'Saved events are unavailable: ' + errMessage(e));
    }
  };
  loadEvents();
  /** @returns {{ok: true, value: unknown} | {ok: false}} */
  const checkJson = () => {
    try {
      const v = JSON.parse(area.value);
      jsonMsg.hidden = true;
      area.removeAttribute('aria-invalid');
      return { ok: true, value: v };
    } catch (e) {
      jsonMsg.hidden = false;
      setText(jsonMsg, 'The event is not valid JSON: ' + errMessage(e));
      area.setAttribute('aria-invalid', 'true');
      return { ok: false };
    }
  };
  select.addEventListener('change', () => {
    const ev = events.find((e) => e.name === select.value);
    deleteBtn.disabled = !ev;
    if (!ev) return;
    area.value = JSON.stringify(ev.event, null, 2) + '\n';
    eventName.value = ev.name;
    checkJson();
  });
  area.addEventListener('input', () => {
    if (!jsonMsg.hidden) checkJson();
  });
  area.addEventListener('blur', checkJson);
  saveBtn.addEventListener('click', async () => {
    const parsed = checkJson();
    if (!parsed.ok) return;
    const n = eventName.value.trim();
    if (!n) {
      setText(eventsMsg, 'Give the event a name to save it.');
      eventName.focus();
      return;
    }
    saveBtn.disabled = true;
    try {
      await api('PUT', `${path}/test-events/${enc(n)}`, area.value);
      await loadEvents(n);
      setText(eventsMsg, `Saved the event ${n}.`);
    } catch (e) {
      setText(eventsMsg, errMessage(e));
    } finally {
      saveBtn.disabled = false;
    }
  });
  deleteBtn.addEventListener('click', async () => {
    const n = select.value;
    if (!n) return;
    deleteBtn.disabled = true;
    try {
      await api('DELETE', `${path}/test-events/${enc(n)}`);
      await loadEvents();
      if (eventName.value === n) eventName.value = '';
      setText(eventsMsg, `Deleted the event ${n}.`);
      select.focus();
    } catch (e) {
      setText(eventsMsg, errMessage(e));
      deleteBtn.disabled = false;
    }
  });

  let running = false;
  invokeBtn.addEventListener('click', async () => {
    if (running) return;
    const parsed = checkJson();
    if (!parsed.ok) {
      area.focus();
      return;
    }
    running = true;
    invokeBtn.disabled = true;
    setText(invokeBtn, 'Invoking…');
    err.hide();
    try {
      // Asked as a stream: a handler that streams its answer shows it as it writes (a
      // streamed answer has no duration header: its record has the numbers).
      const r = await apiRaw('POST', path + '/invoke', JSON.stringify(parsed.value),
        { accept: '*/*', headers: { 'x-ignis-invocation-type': 'stream' } });
      const ct = r.headers.get('content-type') || '';
      /** @type {Array<[string, string]>} */
      const headerPairs = [];
      r.headers.forEach((v, k) => headerPairs.push([k, v]));
      headerPairs.sort((a, b) => a[0].localeCompare(b[0]));
      const id = r.headers.get('x-ignis-invocation-id');
      const coldHeader = r.headers.get('x-ignis-cold-start');
      const durHeader = r.headers.get('x-ignis-duration-ms');
      const initHeader = r.headers.get('x-ignis-init-ms');
      const streamed = durHeader == null && r.body != null;
      /** @param {Uint8Array} bytes @param {boolean} done */
      const show = (bytes, done) => resp.show({
        statusCode: r.status,
        headerPairs,
        bodyText: done ? clip(prettyBody(decodeBody(bytes, ct), ct)) : clip(decodeBody(bytes, ct)),
        cold: coldHeader == null ? null : coldHeader === 'true',
        durationMs: durHeader == null ? null : Number(durHeader),
        initMs: initHeader == null ? null : Number(initHeader),
        invocationId: id,
        streaming: streamed && !done,
      });
      let bytes = new Uint8Array(0);
      if (streamed && r.body) {
        const reader = r.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (!pg.alive) return;
          if (done) break;
          const joined = new Uint8Array(bytes.length + value.length);
          joined.set(bytes);
          joined.set(value, bytes.length);
          bytes = joined;
          show(bytes, false);
        }
      } else {
        bytes = new Uint8Array(await r.arrayBuffer());
        if (!pg.alive) return;
      }
      show(bytes, true);
      if (panel.onInvoked) panel.onInvoked();
      if (id) showLogs(id);
      else logsWrap.hidden = true;
    } catch (e) {
      if (!pg.alive) return;
      err.show(errMessage(e));
    } finally {
      running = false;
      invokeBtn.disabled = false;
      setText(invokeBtn, 'Invoke');
    }
  });

  /** @type {string | null} */
  let logsFor = null;
  /** @param {string} id */
  const showLogs = async (id) => {
    logsFor = id;
    logsWrap.hidden = false;
    clear(logsBox).append(h('p', { class: 'muted small' }, 'Loading logs…'));
    // The record is written just after the answer: retry briefly while it is not there.
    for (let attempt = 0; attempt < 6 && pg.alive && logsFor === id; attempt++) {
      try {
        const inv = await api('GET', '/v1/invocations/' + enc(id));
        if (logsFor !== id) return;
        clear(logsBox).append(logLines(inv.logs, 'invoke-log-lines'));
        return;
      } catch (e) {
        if (!isStatus(e, 404)) {
          clear(logsBox).append(h('p', { class: 'form-error small' }, errMessage(e)));
          return;
        }
      }
      await wait(pg, 150 * 2 ** attempt);
    }
    if (logsFor === id) clear(logsBox).append(h('p', { class: 'muted small' }, 'The logs are not recorded yet; see the Invocations tab.'));
  };
  return panel;
}
