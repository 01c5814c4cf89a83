// @ts-check
// The playground: run code against an event without creating a function (POST
// /v1/playground/run); what it held is kept while the tab lives.

import { ApiError, apiRaw, errMessage, errorFrom } from './api.js';
import { clear, h, setText, uid } from './dom.js';
import { codeEditor } from './editor.js';
import { clip, decodeBody, loadErrorText, prettyBody } from './format.js';
import { logLines, responseView } from './response.js';
import { DEFAULT_EVENT, runtimeOptions, TEMPLATES } from './runtimes.js';
import { errorBox, field, pageHeader } from './widgets.js';

/**
 * What the playground held, kept while the tab lives so leaving the page loses nothing.
 * @type {{runtime: string, code: string | null, handler: string, event: string}}
 */
const state = { runtime: 'python', code: null, handler: 'handler', event: DEFAULT_EVENT };

/**
 * @param {import('./page.js').Page} pg
 * @param {HTMLElement} app
 */
export function playgroundPage(pg, app) {
  document.title = 'Playground · Ignis';
  const st = state;
  const runtime = h('select', { testid: 'pg-runtime' });
  runtimeOptions(runtime, st.runtime);
  const handler = h('input', { type: 'text', value: st.handler, spellcheck: 'false', autocapitalize: 'off', testid: 'pg-handler' });
  const templateBtn = h('button', { type: 'button', class: 'btn', testid: 'pg-template' }, 'Reset to the template');
  const runBtn = h('button', { type: 'button', class: 'btn btn-primary', testid: 'pg-run' }, 'Run');
  const eventArea = h('textarea', { class: 'code-textarea event-editor', rows: 8, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', testid: 'pg-event', id: uid('pgevent') });
  eventArea.value = st.event;
  const err = errorBox('pg-error');
  const loadErr = h('div', { class: 'error-box', testid: 'pg-load-error', hidden: true });
  const resp = responseView('pg');
  const logsBox = h('div', { testid: 'pg-logs' });
  const logsWrap = h('div', { hidden: true }, h('h3', { class: 'sub' }, 'Logs'), logsBox);
  const editorBox = h('div', {});
  const idle = h('p', { class: 'muted small', testid: 'pg-idle' }, 'Run the code to see its answer here.');
  app.append(
    pageHeader('Playground'),
    h('p', { class: 'muted' }, 'Run code against an event without creating a function. Nothing is saved on the server.'),
    h('div', { class: 'toolbar' },
      field('Runtime', runtime), field('Handler', handler),
      h('div', { class: 'toolbar-actions' }, templateBtn, runBtn)),
    h('div', { class: 'code-layout' },
      h('div', { class: 'code-main' }, h('p', { class: 'muted small' }, 'Run with the button or Ctrl+Enter (⌘Enter).'), editorBox),
      h('section', { class: 'invoke card', 'aria-labelledby': 'pg-result-title' },
        h('label', { for: eventArea.id }, 'Event (JSON)'), eventArea,
        h('h2', { class: 'sub', id: 'pg-result-title' }, 'Result'),
        err.el, loadErr, resp.el, logsWrap,
        idle)));

  /** @type {import('./editor.js').Editor | null} */
  let editor = null;
  let template = TEMPLATES[st.runtime];
  codeEditor(pg, editorBox, { runtime: st.runtime, value: st.code == null ? template : st.code, label: 'Playground code', testid: 'code-editor' }).then((ed) => {
    editor = ed;
    ed.onChange(() => {
      st.code = ed.getValue();
    });
  });
  runtime.addEventListener('change', () => {
    const rt = runtime.value;
    st.runtime = rt;
    if (!editor) return;
    const untouched = editor.getValue() === template || !editor.getValue().trim();
    template = TEMPLATES[rt];
    editor.setRuntime(rt, untouched ? template : null);
    st.code = editor.getValue();
  });
  templateBtn.addEventListener('click', () => {
    if (!editor) return;
    template = TEMPLATES[runtime.value];
    editor.setRuntime(runtime.value, template);
    st.code = null;
    editor.focus();
  });
  handler.addEventListener('input', () => {
    st.handler = handler.value;
  });
  eventArea.addEventListener('input', () => {
    st.event = eventArea.value;
  });

  let running = false;
  const run = async () => {
    if (running || !editor) return;
    const ed = editor;
    err.hide();
    let event;
    try {
      event = JSON.parse(eventArea.value);
    } catch (e) {
      err.show('The event is not valid JSON: ' + errMessage(e));
      eventArea.focus();
      return;
    }
    running = true;
    runBtn.disabled = true;
    setText(runBtn, 'Running…');
    try {
      // Asked as a stream: a streaming handler's head and chunks show as they come
      // (Server-Sent Events), then the run's answer (`end`).
      const r = await apiRaw('POST', '/v1/playground/run', JSON.stringify({
        runtime: runtime.value, code: ed.getValue(), handler: handler.value.trim() || 'handler', event,
      }), { accept: 'text/event-stream', headers: { 'x-ignis-invocation-type': 'stream' } });
      if (!r.ok) throw await errorFrom(r);
      /** @type {{status: number, headers: Array<[string, string]>} | null} */
      let head = null;
      let streamed = new Uint8Array(0);
      /** @type {any} */
      let out = null;
      for await (const ev of serverEvents(r)) {
        if (!pg.alive) return;
        if (ev.event === 'head') {
          head = JSON.parse(ev.data);
        } else if (ev.event === 'chunk') {
          const bytes = Uint8Array.from(atob(ev.data), (c) => c.charCodeAt(0));
          const joined = new Uint8Array(streamed.length + bytes.length);
          joined.set(streamed);
          joined.set(bytes, streamed.length);
          streamed = joined;
        } else if (ev.event === 'end') {
          out = JSON.parse(ev.data);
        } else if (ev.event === 'error') {
          const e = JSON.parse(ev.data).error || {};
          throw new ApiError(500, e.code || 'error', e.message || 'the run failed');
        }
        if (head && !out) {
          idle.hidden = true;
          const ct = (head.headers.find(([k]) => k === 'content-type') || ['', ''])[1];
          resp.show({
            statusCode: head.status, headerPairs: head.headers, bodyText: clip(decodeBody(streamed, ct)),
            cold: null, durationMs: null, initMs: null, invocationId: null, streaming: true,
          });
        }
      }
      if (!out) throw new ApiError(0, 'network', 'The run ended without its answer.');
      if (head && out.response) {
        // The body went by in chunks; the answer does not repeat it.
        out.response.body = decodeBody(streamed, (head.headers.find(([k]) => k === 'content-type') || ['', ''])[1]);
        out.response.body_encoding = 'utf8';
      }
      idle.hidden = true;
      ed.clearMarks();
      const le = out.load_error;
      if (le) {
        loadErr.hidden = false;
        setText(loadErr, 'The code failed to load: ' + loadErrorText(le));
        if (le.line) ed.markLine(le.line, loadErrorText(le));
      } else {
        loadErr.hidden = true;
      }
      if (out.response) {
        showResponse(out);
      } else {
        resp.hide();
      }
      logsWrap.hidden = false;
      clear(logsBox).append(logLines(out.logs, 'pg-log-lines'));
    } catch (e) {
      if (pg.alive) err.show(errMessage(e));
    } finally {
      running = false;
      runBtn.disabled = false;
      setText(runBtn, 'Run');
    }
  };
  /**
   * What the run answered: its response (a body maybe in base64) and timings.
   * @param {any} out
   */
  const showResponse = (out) => {
    const r = out.response;
    /** @type {Record<string, string>} */
    const headers = r.headers || {};
    const headerPairs = /** @type {Array<[string, string]>} */ (Object.entries(headers).sort((a, b) => a[0].localeCompare(b[0])));
    const ct = headers['content-type'] || headers['Content-Type'] || '';
    let text = r.body == null ? '' : String(r.body);
    if (r.body_encoding === 'base64') {
      try {
        const bin = atob(text);
        const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
        text = decodeBody(bytes, ct);
      } catch {
        text = '(base64 body that could not be decoded)';
      }
    }
    resp.show({
      statusCode: r.status, headerPairs, bodyText: clip(prettyBody(text, ct)),
      cold: out.cold_start == null ? null : !!out.cold_start,
      durationMs: out.duration_ms, initMs: out.init_ms, invocationId: null,
    });
  };
  runBtn.addEventListener('click', run);
  pg.onRun = run;
}

/**
 * The Server-Sent Events of a response, as they arrive.
 * @param {Response} r
 * @returns {AsyncGenerator<{event: string, data: string}>}
 */
async function* serverEvents(r) {
  if (!r.body) return;
  const reader = r.body.getReader();
  const text = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += text.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}
