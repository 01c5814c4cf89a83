// The Ignis web console: one plain script, no framework, no build step.
//
// Everything the user or the API wrote reaches the page through textContent and DOM
// APIs, never innerHTML. Pages are rebuilt on every route change; each page registers
// what it started (timers, streams, editors) so leaving it stops them.
'use strict';

(function () {
  // ---------------------------------------------------------------- DOM helpers

  /** Creates an element. props: class, text, testid, on<event>, value/checked, attributes. */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    setProps(el, props);
    append(el, kids);
    return el;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v != null) el.setAttribute(k, String(v));
    }
    append(el, kids);
    return el;
  }

  function setProps(el, props) {
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'testid') el.dataset.testid = v;
      else if (k === 'value' || k === 'checked' || k === 'selected') el[k] = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid == null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function setText(el, text) {
    const t = text == null ? '' : String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- formatting

  function fmtMs(ms) {
    if (ms == null || Number.isNaN(Number(ms))) return '—';
    const n = Number(ms);
    if (n < 1) return n.toFixed(2) + ' ms';
    if (n < 100) return n.toFixed(1) + ' ms';
    if (n < 10000) return Math.round(n) + ' ms';
    return (n / 1000).toFixed(1) + ' s';
  }

  function fmtCount(n) {
    return n == null ? '—' : Number(n).toLocaleString('en-US');
  }

  function fmtTime(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return String(ts || '');
    const p = (n, w = 2) => String(n).padStart(w, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  function fmtDateTime(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return String(ts || '');
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    const time = d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    return sameDay ? time : `${d.toLocaleDateString('en-CA')} ${time}`;
  }

  function fmtClock(ts) {
    const d = new Date(ts);
    return d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
  }

  function fmtInstances(inst) {
    if (!inst) return '—';
    const parts = [];
    for (const k of ['busy', 'idle', 'starting']) {
      if (inst[k]) parts.push(`${inst[k]} ${k}`);
    }
    return parts.length ? parts.join(' · ') : '0';
  }

  const STATUS_TEXT = {
    200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 301: 'Moved Permanently',
    302: 'Found', 304: 'Not Modified', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden',
    404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 413: 'Payload Too Large',
    422: 'Unprocessable Entity', 429: 'Too Many Requests', 500: 'Internal Server Error',
    502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
  };

  function statusLine(status) {
    return `${status} ${STATUS_TEXT[status] || ''}`.trim();
  }

  function statusClass(status) {
    if (status >= 500) return 'pill pill-bad';
    if (status >= 400) return 'pill pill-warn';
    return 'pill pill-good';
  }

  /** Pretty-prints JSON text; anything else comes back unchanged. */
  function prettyBody(text, contentType) {
    const looksJson = /json/i.test(contentType || '') || /^\s*[[{"]/.test(text);
    if (!looksJson) return text;
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      return text;
    }
  }

  /** "Type: message (line N)", without repeating a line number the message already has. */
  function loadErrorText(err) {
    let text = `${err.type ? err.type + ': ' : ''}${err.message || ''}`;
    if (err.line && !new RegExp(`line ${err.line}\\b`).test(text)) text += ` (line ${err.line})`;
    return text;
  }

  const MAX_BODY_CHARS = 200000;
  function clip(text) {
    if (text.length <= MAX_BODY_CHARS) return text;
    return text.slice(0, MAX_BODY_CHARS) + `\n… (${text.length - MAX_BODY_CHARS} more characters not shown)`;
  }

  // ---------------------------------------------------------------- API client

  const TOKEN_KEY = 'ignis.token';

  class ApiError extends Error {
    constructor(status, code, message, detail) {
      super(message);
      this.status = status;
      this.code = code;
      this.detail = detail || {};
    }
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return '';
    }
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra);
    const t = token();
    if (t) headers.authorization = 'Bearer ' + t;
    return headers;
  }

  async function errorFrom(resp) {
    let text = '';
    try {
      text = await resp.text();
    } catch {
      // The body could not be read; the status line still says something.
    }
    try {
      const j = JSON.parse(text);
      if (j && j.error && typeof j.error.message === 'string') {
        return new ApiError(resp.status, j.error.code || 'error', j.error.message, j.error);
      }
    } catch {
      // Not JSON: fall through to the status line.
    }
    const snippet = text.trim().slice(0, 300);
    return new ApiError(
      resp.status,
      'http_' + resp.status,
      `The server answered ${statusLine(resp.status)}${snippet ? ': ' + snippet : ''}`,
    );
  }

  /**
   * Calls the API. Answers the parsed JSON (null for 204), or the Response itself with
   * {raw: true} (any status but 401). A 401 shows the login prompt and throws.
   */
  async function api(method, path, body, opts) {
    opts = opts || {};
    const headers = authHeaders({ accept: opts.accept || 'application/json' });
    let payload;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: payload, signal: opts.signal, cache: 'no-store' });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', 'Cannot reach the Ignis server (' + (e && e.message ? e.message : e) + ').');
    }
    if (resp.status === 401 && !opts.allow401) {
      const err = await errorFrom(resp);
      requireLogin(err.message);
      throw err;
    }
    if (opts.raw) return resp;
    if (!resp.ok) throw await errorFrom(resp);
    if (resp.status === 204) return null;
    const text = await resp.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(resp.status, 'invalid_json', 'The server answered something that is not JSON.');
    }
  }

  function errMessage(e) {
    if (e instanceof ApiError) return e.message;
    if (e && e.message) return e.message;
    return String(e);
  }

  // ---------------------------------------------------------------- templates

  // The seed's hello examples: what a new function or a playground session starts from.
  const TEMPLATES = {
    python: [
      'def handler(event):',
      '    name = event.get("name", "World")',
      '    return {',
      '        "statusCode": 200,',
      '        "headers": {"content-type": "application/json"},',
      '        "body": f\'{{"message": "Hello, {name}!"}}\',',
      '    }',
      '',
    ].join('\n'),
    javascript: [
      'export async function handler(event) {',
      '  const name = event?.name || "World";',
      '  return {',
      '    statusCode: 200,',
      '    headers: { "content-type": "application/json" },',
      '    body: JSON.stringify({ message: `Hello, ${name}!` }),',
      '  };',
      '}',
      '',
    ].join('\n'),
    typescript: [
      'interface Event {',
      '  name?: string;',
      '}',
      '',
      'export async function handler(event: Event) {',
      '  const name = event?.name || "World";',
      '  return {',
      '    statusCode: 200,',
      '    headers: { "content-type": "application/json" },',
      '    body: JSON.stringify({ message: `Hello, ${name}!` }),',
      '  };',
      '}',
      '',
    ].join('\n'),
  };

  const DEFAULT_EVENT = '{\n  "name": "Ada"\n}\n';

  const RUNTIME_LABELS = { python: 'Python', javascript: 'JavaScript', typescript: 'TypeScript' };
  const RUNTIME_FILES = { python: 'main.py', javascript: 'index.js', typescript: 'index.ts' };
  const RUNTIMES = ['python', 'javascript', 'typescript'];

  /** What /v1/runtimes said, fetched once after sign-in (null until then or if it failed). */
  let runtimeInfo = null;

  function runtimeOptions(select, selected) {
    clear(select);
    for (const name of RUNTIMES) {
      const info = runtimeInfo && runtimeInfo.find((r) => r.name === name);
      let label = RUNTIME_LABELS[name];
      if (info && info.available && info.version) {
        label += name === 'python' ? ` (CPython ${info.version})` : ` (Bun ${info.version})`;
      } else if (info && !info.available) {
        label += ' (not available on this server)';
      }
      select.append(h('option', { value: name, selected: name === selected, disabled: info && !info.available }, label));
    }
    select.value = selected;
  }

  // ---------------------------------------------------------------- toasts

  function toast(message, kind) {
    const box = document.getElementById('toasts');
    const el = h('div', { class: 'toast' + (kind === 'error' ? ' toast-error' : ''), testid: 'toast' }, message);
    box.append(el);
    setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
  }

  // ---------------------------------------------------------------- page lifecycle

  /** The page on screen: what it started, so leaving it stops everything. */
  let page = null;

  function newPage() {
    teardown();
    page = { alive: true, cleanups: [], onSave: null, onRun: null };
    return page;
  }

  function teardown() {
    if (!page) return;
    page.alive = false;
    for (const fn of page.cleanups.splice(0).reverse()) {
      try {
        fn();
      } catch (e) {
        console.error(e);
      }
    }
    page = null;
  }

  /** Runs fn now and then again `interval()` ms after each run finishes, while pg lives. */
  function poll(pg, fn, interval) {
    let timer = null;
    let stopped = false;
    const run = async () => {
      timer = null;
      if (stopped || !pg.alive) return;
      try {
        await fn();
      } catch (e) {
        console.error(e);
      }
      if (stopped || !pg.alive) return;
      timer = setTimeout(run, typeof interval === 'function' ? interval() : interval);
    };
    const handle = {
      stop() {
        stopped = true;
        if (timer) clearTimeout(timer);
      },
      /** Runs again right away (or as soon as the current run ends). */
      now() {
        if (timer) {
          clearTimeout(timer);
          run();
        }
      },
    };
    pg.cleanups.push(handle.stop);
    run();
    return handle;
  }

  function wait(pg, ms) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      pg.cleanups.push(() => clearTimeout(t));
    });
  }

  // ---------------------------------------------------------------- sign-in

  let loginShown = false;

  /** Any 401: forget a rejected token and show only the login prompt. */
  function requireLogin(message) {
    const hadToken = !!token();
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage may be unavailable; there is nothing to forget then.
    }
    if (loginShown) return;
    teardown();
    loginShown = true;
    document.getElementById('topbar').hidden = true;
    renderLogin(hadToken ? message : '');
  }

  function renderLogin(message) {
    const app = clear(document.getElementById('app'));
    const input = h('input', {
      id: 'login-token', type: 'password', autocomplete: 'current-password', required: true,
      testid: 'login-token', 'aria-describedby': 'login-help',
    });
    const error = h('p', { class: 'form-error', role: 'alert', testid: 'login-error', hidden: !message }, message || '');
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'login-submit' }, 'Sign in');
    const form = h('form', { class: 'login card', testid: 'login', novalidate: true },
      h('h1', {}, 'Sign in to Ignis'),
      h('p', { id: 'login-help', class: 'muted' },
        'This server needs its access token (the --token or IGNIS_TOKEN given to ignis serve). ',
        'It is kept for this browser tab only.'),
      h('div', { class: 'field' }, h('label', { for: 'login-token' }, 'Access token'), input),
      error,
      h('div', { class: 'actions' }, submit));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) {
        error.hidden = false;
        error.textContent = 'Enter the token.';
        input.focus();
        return;
      }
      submit.disabled = true;
      error.hidden = true;
      try {
        sessionStorage.setItem(TOKEN_KEY, value);
        const resp = await api('GET', '/v1/runtimes', undefined, { raw: true, allow401: true });
        if (resp.status === 401) {
          sessionStorage.removeItem(TOKEN_KEY);
          throw await errorFrom(resp);
        }
        if (!resp.ok) throw await errorFrom(resp);
        runtimeInfo = ((await resp.json()) || {}).runtimes || null;
        loginShown = false;
        showApp();
      } catch (e) {
        error.hidden = false;
        error.textContent = errMessage(e);
        input.select();
        input.focus();
      } finally {
        submit.disabled = false;
      }
    });
    app.append(form);
    input.focus();
  }

  function signOut() {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Nothing stored.
    }
    teardown();
    start();
  }

  // ---------------------------------------------------------------- Monaco

  const MONACO_BASE = '/console/monaco/vs';
  let monacoPromise = null;
  let monacoProblem = '';

  /** Loads Monaco once; answers the monaco namespace, or null (and says why) without it. */
  function loadMonaco() {
    if (monacoPromise) return monacoPromise;
    monacoPromise = new Promise((resolve) => {
      const fail = async (why) => {
        monacoProblem = why;
        try {
          const resp = await fetch(MONACO_BASE + '/loader.js', { method: 'GET' });
          if (!resp.ok) monacoProblem = (await errorFrom(resp)).message;
        } catch {
          // Keep the first reason.
        }
        resolve(null);
      };
      const script = document.createElement('script');
      script.src = MONACO_BASE + '/loader.js';
      script.onerror = () => fail('The code editor (Monaco) could not be loaded.');
      script.onload = () => {
        try {
          window.require.config({ paths: { vs: MONACO_BASE } });
          window.require(
            ['vs/editor/editor.main'],
            () => {
              configureMonaco(window.monaco);
              resolve(window.monaco);
            },
            (err) => fail('The code editor (Monaco) failed to start: ' + (err && err.message ? err.message : err)),
          );
        } catch (e) {
          fail('The code editor (Monaco) failed to start: ' + e.message);
        }
      };
      document.head.append(script);
    });
    return monacoPromise;
  }

  function configureMonaco(monaco) {
    // Functions run on Bun, whose globals (Bun, process, …) the browser's TypeScript does
    // not know: keep syntax checks, drop type checks that would flag correct code.
    const ts = (monaco.languages && monaco.languages.typescript) || monaco.typescript;
    for (const defaults of [ts && ts.typescriptDefaults, ts && ts.javascriptDefaults]) {
      if (!defaults) continue;
      try {
        defaults.setDiagnosticsOptions({ noSemanticValidation: true, noSyntaxValidation: false });
        defaults.setCompilerOptions(Object.assign({}, defaults.getCompilerOptions(), {
          target: 99, module: 99, allowNonTsExtensions: true, allowJs: true,
        }));
      } catch (e) {
        console.warn('cannot configure TypeScript diagnostics', e);
      }
    }
  }

  let modelCounter = 0;

  /**
   * A code editor in `container`: Monaco when the server has it, else a text area with a
   * visible notice. Answers {getValue, setValue, setRuntime, markLine, clearMarks, focus,
   * revealLine, onChange, dispose}.
   */
  async function codeEditor(pg, container, opts) {
    container.classList.add('editor');
    container.dataset.testid = opts.testid || 'code-editor';
    container.dataset.language = opts.runtime;
    clear(container).append(h('p', { class: 'muted editor-loading' }, 'Loading the editor…'));
    const monaco = await loadMonaco();
    clear(container);
    let ed;
    if (monaco && pg.alive) ed = monacoEditor(monaco, container, opts);
    else ed = textareaEditor(container, opts);
    pg.cleanups.push(() => ed.dispose());
    return ed;
  }

  function monacoEditor(monaco, container, opts) {
    const host = h('div', { class: 'editor-host' });
    container.append(host);
    const listeners = [];
    let runtime = opts.runtime;
    const newModel = (value, rt) => {
      modelCounter += 1;
      const uri = monaco.Uri.parse(`file:///ignis/${modelCounter}/${RUNTIME_FILES[rt] || 'code.txt'}`);
      const model = monaco.editor.createModel(value, rt, uri);
      model.updateOptions({ tabSize: rt === 'python' ? 4 : 2, insertSpaces: true });
      return model;
    };
    let model = newModel(opts.value || '', runtime);
    const editor = monaco.editor.create(host, {
      model,
      automaticLayout: true,
      minimap: { enabled: false },
      scrollBeyondLastLine: false,
      fontSize: 13,
      lineNumbersMinChars: 3,
      fixedOverflowWidgets: true,
      renderLineHighlightOnlyWhenFocus: true,
      ariaLabel: opts.label || 'Code editor',
      readOnly: !!opts.readOnly,
    });
    editor.onDidChangeModelContent(() => listeners.forEach((fn) => fn()));
    container.dataset.editor = 'monaco';
    container.append(h('p', { class: 'editor-hint muted' },
      'Tab indents inside the editor; press Ctrl+M (Ctrl+Shift+M on a Mac) to make Tab move the focus instead.'));
    return {
      kind: 'monaco',
      getValue: () => model.getValue(),
      setValue(v) {
        if (model.getValue() !== v) model.setValue(v);
      },
      setRuntime(rt, value) {
        if (rt === runtime && value == null) return;
        const old = model;
        model = newModel(value == null ? old.getValue() : value, rt);
        runtime = rt;
        container.dataset.language = rt;
        editor.setModel(model);
        old.dispose();
      },
      markLine(line, message) {
        const ln = Math.max(1, Math.min(Number(line) || 1, model.getLineCount()));
        monaco.editor.setModelMarkers(model, 'ignis', [{
          severity: monaco.MarkerSeverity.Error,
          message,
          startLineNumber: ln,
          startColumn: model.getLineFirstNonWhitespaceColumn(ln) || 1,
          endLineNumber: ln,
          endColumn: model.getLineMaxColumn(ln),
        }]);
        editor.revealLineInCenterIfOutsideViewport(ln);
      },
      clearMarks() {
        monaco.editor.setModelMarkers(model, 'ignis', []);
      },
      revealLine(line) {
        const ln = Math.max(1, Math.min(Number(line) || 1, model.getLineCount()));
        editor.revealLineInCenter(ln);
        editor.setPosition({ lineNumber: ln, column: model.getLineFirstNonWhitespaceColumn(ln) || 1 });
        editor.focus();
      },
      focus: () => editor.focus(),
      onChange: (fn) => listeners.push(fn),
      dispose() {
        editor.dispose();
        model.dispose();
      },
    };
  }

  function textareaEditor(container, opts) {
    const notice = h('p', { class: 'notice', role: 'note', testid: 'editor-fallback' },
      (monacoProblem || 'The code editor could not be loaded.') + ' Editing in a plain text box instead.');
    const area = h('textarea', {
      class: 'code-textarea', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off',
      'aria-label': opts.label || 'Code', rows: 18, readonly: opts.readOnly || null,
    });
    area.value = opts.value || '';
    const mark = h('p', { class: 'form-error', hidden: true });
    container.dataset.editor = 'textarea';
    container.append(notice, area, mark);
    const listeners = [];
    area.addEventListener('input', () => listeners.forEach((fn) => fn()));
    const lineOffset = (line) => {
      const lines = area.value.split('\n');
      let offset = 0;
      for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
      return offset;
    };
    return {
      kind: 'textarea',
      getValue: () => area.value,
      setValue(v) {
        area.value = v;
      },
      setRuntime(rt, value) {
        container.dataset.language = rt;
        if (value != null) area.value = value;
      },
      markLine(line, message) {
        mark.hidden = false;
        mark.textContent = `Line ${line}: ${message}`;
      },
      clearMarks() {
        mark.hidden = true;
      },
      revealLine(line) {
        area.focus();
        const start = lineOffset(line);
        area.setSelectionRange(start, start);
      },
      focus: () => area.focus(),
      onChange: (fn) => listeners.push(fn),
      dispose() {},
    };
  }

  // ---------------------------------------------------------------- shared widgets

  let idCounter = 0;
  function uid(prefix) {
    idCounter += 1;
    return `${prefix}-${idCounter}`;
  }

  function field(label, input, help) {
    if (!input.id) input.id = uid('f');
    const kids = [h('label', { for: input.id }, label), input];
    if (help) {
      const helpId = uid('help');
      input.setAttribute('aria-describedby', helpId);
      kids.push(h('p', { class: 'help', id: helpId }, help));
    }
    return h('div', { class: 'field' }, kids);
  }

  function errorBox(testid) {
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

  /** Key/value rows for environment variables. */
  function envEditor(initial) {
    const rows = h('div', { class: 'env-rows', testid: 'env-rows' });
    const addRow = (key, value) => {
      const k = h('input', { type: 'text', class: 'env-key', value: key || '', placeholder: 'NAME', 'aria-label': 'Variable name', spellcheck: 'false', autocapitalize: 'off' });
      const v = h('input', { type: 'text', class: 'env-value', value: value || '', placeholder: 'value', 'aria-label': 'Value', spellcheck: 'false', autocapitalize: 'off' });
      const row = h('div', { class: 'env-row', testid: 'env-row' }, k, v);
      const remove = h('button', {
        type: 'button', class: 'btn btn-quiet btn-small', 'aria-label': 'Remove this variable',
        onclick: () => {
          const next = row.nextElementSibling || row.previousElementSibling;
          row.remove();
          if (next) next.querySelector('input').focus();
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
      /** The variables as an object; throws a readable Error for a duplicate or nameless row. */
      value() {
        const out = {};
        for (const row of rows.querySelectorAll('.env-row')) {
          const key = row.querySelector('.env-key').value.trim();
          const val = row.querySelector('.env-value').value;
          if (!key && !val) continue;
          if (!key) throw new Error('An environment variable has a value but no name.');
          if (Object.prototype.hasOwnProperty.call(out, key)) throw new Error(`The environment variable ${key} is listed twice.`);
          out[key] = val;
        }
        return out;
      },
    };
  }

  /** A row of tabs (buttons with aria-selected) over panels; arrow keys move between tabs. */
  function tabs(defs, selected, onSelect) {
    const list = h('div', { class: 'tabs', role: 'tablist' });
    const panels = [];
    const buttons = [];
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
      def.panel = p;
    }
    list.addEventListener('keydown', (ev) => {
      const i = buttons.indexOf(document.activeElement);
      if (i < 0) return;
      let j = null;
      if (ev.key === 'ArrowRight') j = (i + 1) % buttons.length;
      else if (ev.key === 'ArrowLeft') j = (i - 1 + buttons.length) % buttons.length;
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = buttons.length - 1;
      if (j == null) return;
      ev.preventDefault();
      select(buttons[j].dataset.tab, true);
    });
    return { list, panels, select };
  }

  /** The answer of a function: status, cold/warm, duration, headers, body. */
  function responseView(prefix) {
    const status = h('span', { class: 'pill', testid: prefix + '-status' });
    const start = h('span', { class: 'pill pill-quiet', testid: prefix + '-start' });
    const duration = h('span', { class: 'metric', testid: prefix + '-duration' });
    const init = h('span', { class: 'metric', testid: prefix + '-init' });
    const id = h('span', { class: 'metric mono small', testid: prefix + '-id' });
    const headersList = h('dl', { class: 'headers', testid: prefix + '-headers' });
    const headers = h('details', { class: 'headers-box' }, h('summary', {}, 'Headers'), headersList);
    const body = h('pre', { class: 'code-block', testid: prefix + '-body', tabindex: '0', 'aria-label': 'Response body' });
    const errorText = h('p', { class: 'error-summary', testid: prefix + '-error' });
    const stack = h('pre', { class: 'code-block error-text', tabindex: '0', 'aria-label': 'Stack trace' });
    const errorBox_ = h('div', { hidden: true }, errorText, stack);
    const el = h('div', { class: 'response', testid: prefix + '-result', hidden: true },
      h('div', { class: 'response-meta' }, status, start, duration, init, id),
      errorBox_,
      h('h3', { class: 'sub' }, 'Body'), body, headers);
    return {
      el,
      show({ statusCode, headerPairs, bodyText, cold, durationMs, initMs, invocationId }) {
        el.hidden = false;
        status.className = statusClass(statusCode);
        setText(status, statusLine(statusCode));
        start.hidden = cold == null;
        setText(start, cold ? 'cold start' : 'warm');
        start.dataset.cold = cold ? 'true' : 'false';
        setText(duration, durationMs == null ? '' : 'Duration ' + fmtMs(durationMs));
        duration.hidden = durationMs == null;
        init.hidden = !cold || initMs == null;
        setText(init, initMs == null ? '' : 'Init ' + fmtMs(initMs));
        id.hidden = !invocationId;
        setText(id, invocationId ? 'Invocation ' + invocationId : '');
        clear(headersList);
        for (const [k, v] of headerPairs) headersList.append(h('dt', {}, k), h('dd', {}, v));
        setText(body, bodyText === '' ? '(empty body)' : bodyText);
        // An error answer ({"error": {...}}) also gets its message and stack in plain text.
        let err = null;
        if (statusCode >= 400) {
          try {
            const j = JSON.parse(bodyText);
            if (j && j.error && typeof j.error.message === 'string') err = j.error;
          } catch {
            // Not an error object: the body says it all.
          }
        }
        errorBox_.hidden = !err;
        if (err) {
          setText(errorText, `${err.type || err.code || 'Error'}: ${err.message}`);
          stack.hidden = !err.stack;
          setText(stack, err.stack || '');
        }
      },
      hide() {
        el.hidden = true;
      },
    };
  }

  function logLines(logs, testid) {
    if (!logs || !logs.length) return h('p', { class: 'muted small', testid }, 'No output.');
    const box = h('div', { class: 'log-box', testid, tabindex: '0', role: 'region', 'aria-label': 'Logs' });
    for (const l of logs) box.append(logLine(l, false));
    return box;
  }

  function logLine(l, withInvocation) {
    const row = h('div', { class: 'log-line' + (l.stream === 'stderr' ? ' log-stderr' : ''), testid: 'log-line' },
      h('span', { class: 'log-ts' }, fmtTime(l.ts)),
      h('span', { class: 'log-stream' }, l.stream || ''));
    if (withInvocation) {
      row.append(h('span', { class: 'log-inv', title: l.invocation_id || '' }, (l.invocation_id || '').slice(-8)));
    }
    row.append(h('span', { class: 'log-text' }, l.line == null ? '' : String(l.line)));
    return row;
  }

  // ---------------------------------------------------------------- router

  function parseRoute() {
    const raw = location.hash.replace(/^#\/?/, '');
    const parts = raw.split('/').filter(Boolean).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
    if (parts.length === 0 || (parts[0] === 'functions' && parts.length === 1)) return { page: 'functions' };
    if (parts[0] === 'functions' && parts.length <= 3) return { page: 'function', name: parts[1], tab: parts[2] };
    if (parts[0] === 'new' && parts.length === 1) return { page: 'new' };
    if (parts[0] === 'playground' && parts.length === 1) return { page: 'playground' };
    return { page: 'missing' };
  }

  let firstRender = true;

  function route() {
    if (loginShown) return;
    const r = parseRoute();
    const pg = newPage();
    pg.navigated = !firstRender;
    const app = clear(document.getElementById('app'));
    for (const a of document.querySelectorAll('[data-nav]')) {
      const current = a.dataset.nav === (r.page === 'function' || r.page === 'new' ? 'functions' : r.page);
      if (current) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (r.page === 'functions') listPage(pg, app);
    else if (r.page === 'function') functionPage(pg, app, r.name, r.tab);
    else if (r.page === 'new') createPage(pg, app);
    else if (r.page === 'playground') playgroundPage(pg, app);
    else missingPage(app);
    // After a navigation, keyboard and screen-reader users land on the new page's heading.
    if (!firstRender) {
      const h1 = app.querySelector('h1');
      if (h1) {
        h1.tabIndex = -1;
        h1.focus({ preventScroll: true });
      }
    }
    firstRender = false;
  }

  function missingPage(app) {
    document.title = 'Not found · Ignis';
    app.append(h('div', { class: 'card' },
      h('h1', {}, 'Nothing here'),
      h('p', {}, 'This address does not match a console page. ', h('a', { href: '#/functions' }, 'Go to the functions.'))));
  }

  function pageHeader(title, ...actions) {
    return h('div', { class: 'page-head' }, h('h1', {}, title), h('div', { class: 'page-actions' }, actions));
  }

  // ---------------------------------------------------------------- functions list

  function listPage(pg, app) {
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

    const rows = new Map();
    const cell = (label, testid) => h('td', { 'data-label': label, testid });
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

    let stats = null;
    let statsError = '';
    let lastStatsAt = 0;
    const refresh = async () => {
      let fns;
      try {
        const [list] = await Promise.all([
          api('GET', '/v1/functions'),
          Date.now() - lastStatsAt > 4000 ? loadStats() : null,
        ]);
        fns = (list && list.functions) || [];
        err.hide();
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return;
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
        if (e instanceof ApiError && e.status === 401) throw e;
        statsError = errMessage(e);
        stats = null;
      }
      lastStatsAt = Date.now();
    };
    poll(pg, refresh, 2000);
  }

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

  // ---------------------------------------------------------------- create

  function createPage(pg, app) {
    document.title = 'Create function · Ignis';
    const err = errorBox('create-error');
    const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', testid: 'create-name', placeholder: 'hello' });
    const runtime = h('select', { name: 'runtime', testid: 'create-runtime' });
    runtimeOptions(runtime, 'python');
    const memory = h('input', { type: 'number', min: '128', max: '3072', step: '1', value: '128', testid: 'create-memory', inputmode: 'numeric' });
    const timeout = h('input', { type: 'number', min: '1', max: '300', step: '1', value: '30', testid: 'create-timeout', inputmode: 'numeric' });
    const handler = h('input', { type: 'text', value: 'handler', spellcheck: 'false', autocapitalize: 'off', testid: 'create-handler' });
    const env = envEditor({});
    const editorBox = h('div', {});
    const resetBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'create-reset-template' }, 'Reset to the template');
    // The buttons come before the editor: Tab inside Monaco indents, so a keyboard user
    // reaches them without leaving the editor with Ctrl+M.
    const formId = uid('create');
    const submit = h('button', { type: 'submit', form: formId, class: 'btn btn-primary', testid: 'create-submit' }, 'Create function');
    const form = h('form', { class: 'create-form', novalidate: true, testid: 'create-form', id: formId },
      h('div', { class: 'form-grid' },
        field('Name', name, 'Lower-case letters, digits and "-", starting with a letter. It is part of the URL.'),
        field('Runtime', runtime),
        field('Memory (MB)', memory, '128 to 3072.'),
        field('Timeout (seconds)', timeout, '1 to 300.'),
        field('Handler', handler, 'The function the runtime calls.')),
      env.el,
      h('div', { class: 'editor-head' }, h('h2', { class: 'sub' }, 'Code'), resetBtn),
      editorBox);
    app.append(
      pageHeader('Create a function', h('a', { class: 'btn', href: '#/functions' }, 'Cancel'), submit),
      err.el, form);

    let editor = null;
    let template = TEMPLATES.python;
    codeEditor(pg, editorBox, { runtime: 'python', value: template, label: 'Function code' }).then((ed) => {
      editor = ed;
    });
    runtime.addEventListener('change', () => {
      const rt = runtime.value;
      if (!editor) return;
      // Follow the runtime with its template unless the code was changed by hand.
      const untouched = editor.getValue() === template || !editor.getValue().trim();
      template = TEMPLATES[rt];
      editor.setRuntime(rt, untouched ? template : null);
    });
    resetBtn.addEventListener('click', () => {
      if (!editor) return;
      template = TEMPLATES[runtime.value];
      editor.setRuntime(runtime.value, template);
      editor.focus();
    });
    const inputs = { name, memory_mb: memory, timeout_secs: timeout, handler };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!editor) return;
      err.hide();
      for (const el of Object.values(inputs)) el.removeAttribute('aria-invalid');
      let body;
      try {
        body = {
          name: name.value.trim(),
          runtime: runtime.value,
          code: editor.getValue(),
          handler: handler.value.trim() || 'handler',
          memory_mb: numberOrText(memory.value),
          timeout_secs: numberOrText(timeout.value),
          env: env.value(),
        };
      } catch (e) {
        err.show(e.message);
        return;
      }
      submit.disabled = true;
      try {
        const fn = await api('POST', '/v1/functions', body);
        toast(`Created ${fn.name}.`);
        location.hash = '#/functions/' + enc(fn.name);
      } catch (e) {
        if (!pg.alive) return;
        err.show(errMessage(e));
        const bad = e.detail && inputs[e.detail.field];
        if (bad) {
          bad.setAttribute('aria-invalid', 'true');
          bad.focus();
        }
      } finally {
        submit.disabled = false;
      }
    });
    name.focus();
  }

  /** A number when the text is one, else the text (so the API names the bad field). */
  function numberOrText(s) {
    const t = String(s).trim();
    if (t === '') return undefined;
    const n = Number(t);
    return Number.isFinite(n) ? n : t;
  }

  // ---------------------------------------------------------------- one function

  // The fields a create or update body may carry (see crates/core/src/spec.rs).
  const SPEC_FIELDS = ['runtime', 'code', 'handler', 'timeout_secs', 'memory_mb', 'vcpus', 'max_instances',
    'min_instances', 'concurrency', 'idle_timeout_secs', 'env', 'network', 'http', 'retry', 'on_success',
    'on_failure', 'max_async_concurrency', 'schedules'];
  const SCHEDULE_FIELDS = ['cron', 'timezone', 'event', 'enabled', 'catch_up'];

  /** An update body that keeps every setting of `fn` except `changes`. */
  function specBody(fn, changes) {
    const body = {};
    for (const k of SPEC_FIELDS) {
      if (fn[k] !== undefined && fn[k] !== null) body[k] = fn[k];
    }
    // GET shows the effective value; the default (which follows max_instances and
    // concurrency) is left out so that it keeps following them.
    const defaultAsync = Math.max(1, Math.floor((fn.max_instances * fn.concurrency) / 2));
    if (body.max_async_concurrency === defaultAsync) delete body.max_async_concurrency;
    if (Array.isArray(fn.schedules)) {
      body.schedules = fn.schedules.map((s) => {
        const out = {};
        for (const k of SCHEDULE_FIELDS) if (s[k] !== undefined && s[k] !== null) out[k] = s[k];
        return out;
      });
    }
    return Object.assign(body, changes);
  }

  /** Where the newest version stands: deploying, ready or error (with a message). */
  function deployStatus(fn) {
    const de = fn.deploy_error;
    if (de && de.version === fn.version) return 'error';
    if (fn.state === 'creating' || fn.state === 'deploying') return 'deploying';
    if (fn.state === 'error') return 'error';
    if (fn.active_version === fn.version) return 'ready';
    // Still serving an older version without a recorded failure: the reason says why.
    return fn.state_reason ? 'error' : 'deploying';
  }

  function functionPage(pg, app, name, initialTab) {
    document.title = `${name} · Ignis`;
    const err = errorBox('fn-error');
    const loading = h('p', { class: 'muted' }, `Loading ${name}…`);
    app.append(h('p', { class: 'crumbs' }, h('a', { href: '#/functions' }, 'Functions'), ' / ', name), loading, err.el);

    let fn = null;
    let built = null;
    const load = async () => {
      try {
        const data = await api('GET', '/v1/functions/' + enc(name));
        if (!pg.alive) return;
        err.hide();
        fn = data;
        if (!built) {
          loading.remove();
          built = buildFunctionPage(pg, app, fn, initialTab);
          // After a navigation the link that led here is gone: put keyboard users on the
          // page's heading.
          if (pg.navigated && (document.activeElement === document.body || !document.contains(document.activeElement))) {
            const h1 = app.querySelector('h1');
            h1.tabIndex = -1;
            h1.focus({ preventScroll: true });
          }
        } else {
          built.update(fn);
        }
      } catch (e) {
        if (!pg.alive || (e instanceof ApiError && e.status === 401)) return;
        loading.remove();
        err.show(errMessage(e));
        if (e instanceof ApiError && e.status === 404 && built) built.gone();
      }
    };
    const poller = poll(pg, load, () => (built && built.busy() ? 400 : 2000));
    pg.refreshFunction = () => poller.now();
  }

  function buildFunctionPage(pg, app, fn0, initialTab) {
    const name = fn0.name;
    let fn = fn0;
    const path = '/v1/functions/' + enc(name);

    // Header: name, runtime, state, versions, instances, delete.
    const stateBadge = h('span', { class: 'state', testid: 'fn-state' });
    const versionEl = h('span', { class: 'meta-item', testid: 'fn-version' });
    const instancesEl = h('span', { class: 'meta-item', testid: 'fn-instances' });
    const deleteBtn = h('button', { type: 'button', class: 'btn btn-danger', testid: 'fn-delete' }, 'Delete');
    const confirmBox = h('div', { class: 'confirm card', hidden: true, role: 'group', 'aria-label': 'Confirm deletion' });
    const head = h('div', { class: 'page-head' },
      h('div', {},
        h('h1', {}, name),
        h('p', { class: 'meta' },
          h('span', { class: 'runtime-badge', testid: 'fn-runtime' }, RUNTIME_LABELS[fn.runtime] || fn.runtime),
          stateBadge, versionEl, instancesEl)),
      h('div', { class: 'page-actions' }, deleteBtn));

    // The newest version's deploy: a status line, and the load error outside the editor.
    const deployText = h('span', { testid: 'deploy-status-text' });
    const deployErr = h('div', { class: 'deploy-detail', testid: 'deploy-error', hidden: true });
    const gotoLine = h('button', { type: 'button', class: 'btn btn-small', testid: 'deploy-error-goto', hidden: true }, 'Show the line');
    const deployErrText = h('span', { class: 'mono', testid: 'deploy-error-message' });
    deployErr.append(deployErrText, ' ', gotoLine);
    const deployEl = h('div', { class: 'deploy-status', testid: 'deploy-status', role: 'status' }, deployText, deployErr);

    const t = tabs([
      { id: 'code', label: 'Code' },
      { id: 'config', label: 'Configuration' },
      { id: 'invocations', label: 'Invocations' },
      { id: 'logs', label: 'Live logs' },
      { id: 'metrics', label: 'Metrics' },
    ], null, (id) => {
      history.replaceState(null, '', '#/functions/' + enc(name) + (id === 'code' ? '' : '/' + id));
      for (const [k, fnShow] of Object.entries(onShow)) if (k === id) fnShow();
      for (const [k, fnHide] of Object.entries(onHide)) if (k !== id) fnHide();
    });
    const onShow = {};
    const onHide = {};
    app.append(head, confirmBox, deployEl, t.list, ...t.panels);
    const panel = (id) => t.panels.find((p) => p.dataset.tab === id);

    // --- Code tab: editor + test panel.
    const saveBtn = h('button', { type: 'button', class: 'btn btn-primary', testid: 'deploy' }, 'Deploy');
    const dirtyEl = h('span', { class: 'muted small', testid: 'dirty' });
    const saveErr = errorBox('save-error');
    const editorBox = h('div', {});
    const invoke = invokePanel(pg, name);
    panel('code').append(h('div', { class: 'code-layout' },
      h('div', { class: 'code-main' },
        h('div', { class: 'editor-head' },
          h('h2', { class: 'sub' }, RUNTIME_FILES[fn.runtime] || 'Code'),
          h('div', { class: 'editor-actions' }, dirtyEl, saveBtn)),
        h('p', { class: 'muted small' }, 'Deploy makes a new version (Ctrl+S or ⌘S).'),
        saveErr.el,
        editorBox),
      invoke.el));

    let editor = null;
    let savedCode = fn.code || '';
    let saving = false;
    let watchVersion = null; // a version we deployed and wait for
    let markedVersion = null;
    const updateDirty = () => {
      const dirty = editor && editor.getValue() !== savedCode;
      setText(dirtyEl, dirty ? 'Unsaved changes' : '');
    };
    codeEditor(pg, editorBox, { runtime: fn.runtime, value: savedCode, label: `Code of ${name}` }).then((ed) => {
      editor = ed;
      ed.onChange(updateDirty);
      showDeploy();
    });

    const deploy = async () => {
      if (saving || !editor) return;
      saving = true;
      saveBtn.disabled = true;
      saveErr.hide();
      const code = editor.getValue();
      try {
        const updated = await api('PUT', path, specBody(fn, { code }));
        if (!pg.alive) return;
        savedCode = code;
        watchVersion = updated.version;
        markedVersion = null;
        editor.clearMarks();
        fn = Object.assign({}, fn, updated, { code });
        render();
        pg.refreshFunction();
      } catch (e) {
        if (!pg.alive) return;
        saveErr.show(errMessage(e));
      } finally {
        saving = false;
        saveBtn.disabled = false;
        updateDirty();
      }
    };
    saveBtn.addEventListener('click', deploy);
    pg.onSave = deploy;
    pg.onRun = () => {
      if (!panel('code').hidden) invoke.run();
    };
    gotoLine.addEventListener('click', () => {
      if (editor && fn.deploy_error && fn.deploy_error.line) editor.revealLine(fn.deploy_error.line);
    });

    // --- Configuration tab.
    const config = configPanel(pg, () => fn, async (changes) => {
      const updated = await api('PUT', path, specBody(fn, changes));
      watchVersion = updated.version;
      fn = Object.assign({}, fn, updated);
      render();
      pg.refreshFunction();
      return updated;
    });
    panel('config').append(config.el);

    // --- Invocations, logs, metrics.
    const history_ = invocationHistory(pg, name);
    panel('invocations').append(history_.el);
    onShow.invocations = history_.show;
    onHide.invocations = history_.hide;
    invoke.onInvoked = () => history_.refresh();

    const tail = logTail(pg, name);
    panel('logs').append(tail.el);
    onShow.logs = tail.start;

    const metrics = metricsPanel(pg, name);
    panel('metrics').append(metrics.el);
    onShow.metrics = metrics.show;
    onHide.metrics = metrics.hide;

    // --- Delete.
    deleteBtn.addEventListener('click', () => {
      clear(confirmBox);
      const yes = h('button', { type: 'button', class: 'btn btn-danger', testid: 'fn-delete-confirm' }, `Delete ${name}`);
      const no = h('button', { type: 'button', class: 'btn' }, 'Cancel');
      const msg = errorBox('delete-error');
      confirmBox.append(
        h('p', {}, `Delete ${name} with all its versions, invocations and logs? This cannot be undone.`),
        msg.el, h('div', { class: 'actions' }, yes, no));
      confirmBox.hidden = false;
      no.addEventListener('click', () => {
        confirmBox.hidden = true;
        deleteBtn.focus();
      });
      yes.addEventListener('click', async () => {
        yes.disabled = true;
        try {
          await api('DELETE', path);
          toast(`Deleted ${name}.`);
          location.hash = '#/functions';
        } catch (e) {
          msg.show(errMessage(e));
          yes.disabled = false;
        }
      });
      no.focus();
    });

    function showDeploy() {
      const status = deployStatus(fn);
      deployEl.dataset.state = status;
      deployEl.className = 'deploy-status deploy-' + status;
      const de = fn.deploy_error && fn.deploy_error.version === fn.version ? fn.deploy_error : null;
      if (status === 'deploying') {
        setText(deployText, `Deploying version ${fn.version}…`);
      } else if (status === 'ready') {
        setText(deployText, `Version ${fn.version} is live.`);
      } else {
        const serving = fn.active_version != null && fn.active_version !== fn.version
          ? ` Version ${fn.active_version} is still serving.` : '';
        setText(deployText, `Version ${fn.version} failed to load.${serving}`);
      }
      if (status === 'error') {
        let message;
        if (de) {
          message = loadErrorText(de);
        } else {
          message = fn.state_reason || 'The code failed to load.';
        }
        deployErr.hidden = false;
        setText(deployErrText, message);
        gotoLine.hidden = !(de && de.line && editor);
        if (editor && de && de.line && markedVersion !== fn.version) {
          markedVersion = fn.version;
          editor.markLine(de.line, loadErrorText(de));
        }
      } else {
        deployErr.hidden = true;
        if (status === 'ready' && markedVersion != null && editor) {
          markedVersion = null;
          editor.clearMarks();
        }
      }
      if (watchVersion === fn.version && status !== 'deploying') {
        watchVersion = null;
        if (status === 'ready') toast(`Version ${fn.version} is live.`);
      }
    }

    function render() {
      setText(stateBadge, fn.state);
      stateBadge.className = 'state state-' + fn.state;
      let v = `Version ${fn.version}`;
      if (fn.active_version != null && fn.active_version !== fn.version) v += ` · serving ${fn.active_version}`;
      setText(versionEl, v);
      versionEl.dataset.version = String(fn.version);
      if (fn.instances) setText(instancesEl, 'Instances: ' + fmtInstances(fn.instances));
      showDeploy();
      config.update(fn);
    }

    render();
    t.select(['code', 'config', 'invocations', 'logs', 'metrics'].includes(initialTab) ? initialTab : 'code', false);

    return {
      update(next) {
        // A poll answered while a deploy was being stored may describe an older version.
        if (next.version < fn.version) return;
        // Polls carry the newest version's code; the editor keeps what the user typed
        // unless it still holds the code we last loaded or saved.
        if (editor && next.code != null && next.version !== fn.version && editor.getValue() === savedCode) {
          editor.setValue(next.code);
          savedCode = next.code;
        } else if (next.code != null && next.version !== fn.version && !editor) {
          savedCode = next.code;
        }
        fn = next;
        render();
        updateDirty();
      },
      busy: () => saving || deployStatus(fn) === 'deploying' || watchVersion != null,
      gone() {
        saveBtn.disabled = true;
      },
    };
  }

  function configPanel(pg, current, save) {
    const memory = h('input', { type: 'number', min: '128', max: '3072', step: '1', testid: 'config-memory', inputmode: 'numeric' });
    const timeout = h('input', { type: 'number', min: '1', max: '300', step: '1', testid: 'config-timeout', inputmode: 'numeric' });
    const handler = h('input', { type: 'text', spellcheck: 'false', autocapitalize: 'off', testid: 'config-handler' });
    const network = h('select', { testid: 'config-network' },
      h('option', { value: 'none' }, 'None (loopback only)'),
      h('option', { value: 'outbound' }, 'Outbound internet'));
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
        field('Network', network)),
      envBox, err.el, ok,
      h('div', { class: 'actions' }, submit, reset));
    let env = null;
    let shownVersion = null;
    let touched = false;
    form.addEventListener('input', () => {
      touched = true;
    });
    const fill = (fn) => {
      memory.value = String(fn.memory_mb);
      timeout.value = String(fn.timeout_secs);
      handler.value = fn.handler || 'handler';
      network.value = fn.network || 'none';
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
          env: env.value(),
        };
      } catch (e) {
        err.show(e.message);
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
      update(fn) {
        // Refill from the server unless the user is editing the form.
        if (shownVersion === null || (!touched && shownVersion !== fn.version)) fill(fn);
      },
    };
  }

  // ---------------------------------------------------------------- invoke panel

  function invokePanel(pg, name) {
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
    const panel = { el, onInvoked: null, run: () => invokeBtn.click() };

    let events = [];
    const fillSelect = (selected) => {
      clear(select);
      select.append(h('option', { value: '' }, events.length ? 'Saved events…' : 'No saved events'));
      for (const e of events) select.append(h('option', { value: e.name }, e.name));
      select.value = selected && events.some((e) => e.name === selected) ? selected : '';
      deleteBtn.disabled = !select.value;
    };
    const loadEvents = async (selected) => {
      try {
        const data = await api('GET', path + '/test-events');
        events = (data && data.test_events) || [];
        fillSelect(selected);
        setText(eventsMsg, '');
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) return;
        events = [];
        fillSelect();
        setText(eventsMsg, 'Saved events are unavailable: ' + errMessage(e));
      }
    };
    loadEvents();
    select.addEventListener('change', () => {
      const ev = events.find((e) => e.name === select.value);
      deleteBtn.disabled = !ev;
      if (!ev) return;
      area.value = JSON.stringify(ev.event, null, 2) + '\n';
      eventName.value = ev.name;
      checkJson();
    });
    const checkJson = () => {
      try {
        const v = JSON.parse(area.value);
        jsonMsg.hidden = true;
        area.removeAttribute('aria-invalid');
        return { ok: true, value: v };
      } catch (e) {
        jsonMsg.hidden = false;
        setText(jsonMsg, 'The event is not valid JSON: ' + e.message);
        area.setAttribute('aria-invalid', 'true');
        return { ok: false };
      }
    };
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
        const r = await api('POST', path + '/invoke', JSON.stringify(parsed.value), { raw: true, accept: '*/*' });
        const bytes = new Uint8Array(await r.arrayBuffer());
        if (!pg.alive) return;
        const ct = r.headers.get('content-type') || '';
        const headerPairs = [];
        r.headers.forEach((v, k) => headerPairs.push([k, v]));
        headerPairs.sort((a, b) => a[0].localeCompare(b[0]));
        const id = r.headers.get('x-ignis-invocation-id');
        const coldHeader = r.headers.get('x-ignis-cold-start');
        const durHeader = r.headers.get('x-ignis-duration-ms');
        const initHeader = r.headers.get('x-ignis-init-ms');
        resp.show({
          statusCode: r.status,
          headerPairs,
          bodyText: clip(prettyBody(decodeBody(bytes, ct), ct)),
          cold: coldHeader == null ? null : coldHeader === 'true',
          durationMs: durHeader == null ? null : Number(durHeader),
          initMs: initHeader == null ? null : Number(initHeader),
          invocationId: id,
        });
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

    let logsFor = null;
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
          if (!(e instanceof ApiError && e.status === 404)) {
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

  function decodeBody(bytes, contentType) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return `(${bytes.length} bytes of binary data${contentType ? ', ' + contentType : ''})`;
    }
  }

  // ---------------------------------------------------------------- invocation history

  function invocationHistory(pg, name) {
    const list = h('div', { class: 'inv-list', testid: 'invocations' });
    const err = errorBox('invocations-error');
    const refreshBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'invocations-refresh' }, 'Refresh');
    const emptyMsg = h('p', { class: 'muted', testid: 'invocations-empty', hidden: true }, 'No invocations yet. Invoke the function from the Code tab.');
    const el = h('div', {},
      h('div', { class: 'panel-head' }, h('h2', { class: 'sub' }, 'Recent invocations'), refreshBtn),
      err.el, emptyMsg, list);
    const rows = new Map();
    let visible = false;
    let poller = null;

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
    const loadDetail = async (id, detail) => {
      clear(detail).append(h('p', { class: 'muted small' }, 'Loading…'));
      try {
        const inv = await api('GET', '/v1/invocations/' + enc(id));
        clear(detail);
        const facts = h('dl', { class: 'facts' });
        const fact = (k, v) => {
          if (v != null && v !== '') facts.append(h('dt', {}, k), h('dd', {}, String(v)));
        };
        fact('Invocation', inv.id);
        fact('Started', inv.started_at);
        fact('Duration', fmtMs(inv.duration_ms));
        fact('Billed', inv.billed_ms != null ? inv.billed_ms + ' ms' : null);
        fact('Start', inv.cold_start ? 'cold' : 'warm');
        if (inv.init && typeof inv.init === 'object') {
          fact('Init', inv.init.duration_ms != null ? fmtMs(inv.init.duration_ms) : JSON.stringify(inv.init));
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
        const invs = (data && data.invocations) || [];
        emptyMsg.hidden = invs.length > 0;
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
        if (!(e instanceof ApiError && e.status === 401)) err.show(errMessage(e));
      }
    };
    refreshBtn.addEventListener('click', refresh);
    return {
      el,
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

  // ---------------------------------------------------------------- live log tail

  const MAX_TAIL_LINES = 2000;

  function logTail(pg, name) {
    const status = h('span', { class: 'tail-status', testid: 'tail-status', role: 'status' });
    const pauseBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'tail-pause' }, 'Pause');
    const clearBtn = h('button', { type: 'button', class: 'btn btn-small btn-quiet', testid: 'tail-clear' }, 'Clear');
    const box = h('div', { class: 'log-box tail', testid: 'log-tail', tabindex: '0', role: 'log', 'aria-label': 'Live logs', 'aria-live': 'off' });
    const emptyMsg = h('p', { class: 'muted small tail-empty', testid: 'tail-empty' }, 'No log lines yet. Lines appear here as invocations finish.');
    const el = h('div', {},
      h('div', { class: 'panel-head' }, h('h2', { class: 'sub' }, 'Live logs'), h('div', { class: 'tail-controls' }, status, pauseBtn, clearBtn)),
      emptyMsg, box);
    let controller = null;
    let started = false;
    // A reconnect replays the latest lines: those already shown are skipped (counted, so
    // two identical lines stay two lines).
    const shown = new Map();
    let replaySkip = new Map();
    const lineKey = (l) => `${l.invocation_id}|${l.ts}|${l.stream}|${l.line}`;
    let paused = false;
    let retryTimer = null;
    let backoff = 1000;

    const setStatus = (state, text) => {
      status.dataset.state = state;
      status.className = 'tail-status tail-' + state;
      setText(status, text);
    };
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
        if (shown.size > 2 * MAX_TAIL_LINES) shown.delete(shown.keys().next().value);
      }
      if (!lines.length) return;
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      const frag = document.createDocumentFragment();
      for (const l of lines) frag.append(logLine(l, true));
      box.append(frag);
      while (box.childElementCount > MAX_TAIL_LINES) box.firstElementChild.remove();
      emptyMsg.hidden = true;
      if (atBottom) box.scrollTop = box.scrollHeight;
    };
    const stop = () => {
      if (controller) controller.abort();
      controller = null;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = null;
    };
    const retry = (why) => {
      if (!pg.alive || paused) return;
      setStatus('retrying', `${why} Reconnecting in ${Math.round(backoff / 1000)} s…`);
      retryTimer = setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 15000);
    };
    const connect = async () => {
      retryTimer = null;
      if (!pg.alive || paused) return;
      controller = new AbortController();
      const ctl = controller;
      setStatus('connecting', 'Connecting…');
      let resp;
      try {
        resp = await api('GET', `/v1/functions/${enc(name)}/logs?follow=true&limit=100`, undefined,
          { raw: true, signal: ctl.signal, accept: 'text/event-stream' });
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) return;
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
      if (!/text\/event-stream/.test(resp.headers.get('content-type') || '')) {
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
      start() {
        if (started) return;
        started = true;
        connect();
      },
    };
  }

  /** Reads a text/event-stream body, calling onEvent(event, data) for each event. */
  async function readEvents(body, signal, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const onAbort = () => reader.cancel().catch(() => {});
    signal.addEventListener('abort', onAbort);
    let buf = '';
    let event = 'message';
    let data = [];
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

  // ---------------------------------------------------------------- metrics

  function metricsPanel(pg, name) {
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
    let poller = null;
    const refresh = async () => {
      try {
        const s = await api('GET', `/v1/functions/${enc(name)}/stats?minutes=${range.value}`);
        if (!pg.alive) return;
        err.hide();
        renderStats(s);
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 401)) err.show(errMessage(e));
      }
    };
    const renderStats = (s) => {
      const tt = s.totals || {};
      clear(totals);
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

  /** Merges minute points into at most `max` buckets (sums; durations weighted by count). */
  function bucket(series, max) {
    if (series.length <= max) return series;
    const size = Math.ceil(series.length / max);
    const out = [];
    for (let i = 0; i < series.length; i += size) {
      const group = series.slice(i, i + size);
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

  /** A hand-drawn SVG bar or line chart of series[i][key] over time. */
  function chart({ title, testid, series, key, kind, cls, fmt }) {
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
    const total = values.reduce((a, v) => a + (v || 0), 0);
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
    const x = (i) => m.left + i * step;
    const y = (v) => m.top + ph - (top ? (v / top) * ph : 0);
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

  /** A top for counts whose half is a whole number too. */
  function countMax(v) {
    if (v <= 2) return 2;
    const exp = Math.pow(10, Math.floor(Math.log10(v)));
    for (const f of [2, 4, 6, 8, 10]) {
      if (v <= f * exp) return f * exp;
    }
    return 10 * exp;
  }

  function niceMax(v) {
    if (!v || v <= 0) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(v)));
    for (const f of [1, 2, 2.5, 5, 10]) {
      if (v <= f * exp) return f * exp;
    }
    return 10 * exp;
  }

  // ---------------------------------------------------------------- playground

  // What the playground held, kept while the tab lives so leaving the page loses nothing.
  const playgroundState = { runtime: 'python', code: null, handler: 'handler', event: DEFAULT_EVENT };

  function playgroundPage(pg, app) {
    document.title = 'Playground · Ignis';
    const st = playgroundState;
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
          h('p', { class: 'muted small', testid: 'pg-idle' }, 'Run the code to see its answer here.'))));

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
      err.hide();
      let event;
      try {
        event = JSON.parse(eventArea.value);
      } catch (e) {
        err.show('The event is not valid JSON: ' + e.message);
        eventArea.focus();
        return;
      }
      running = true;
      runBtn.disabled = true;
      setText(runBtn, 'Running…');
      try {
        const out = await api('POST', '/v1/playground/run', {
          runtime: runtime.value, code: editor.getValue(), handler: handler.value.trim() || 'handler', event,
        });
        if (!pg.alive) return;
        const idle = app.querySelector('[data-testid=pg-idle]');
        if (idle) idle.hidden = true;
        editor.clearMarks();
        const le = out.load_error;
        if (le) {
          loadErr.hidden = false;
          setText(loadErr, 'The code failed to load: ' + loadErrorText(le));
          if (le.line) editor.markLine(le.line, loadErrorText(le));
        } else {
          loadErr.hidden = true;
        }
        if (out.response) {
          const r = out.response;
          const headerPairs = Object.entries(r.headers || {}).sort((a, b) => a[0].localeCompare(b[0]));
          const ct = (r.headers && (r.headers['content-type'] || r.headers['Content-Type'])) || '';
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
    runBtn.addEventListener('click', run);
    pg.onRun = run;
  }

  // ---------------------------------------------------------------- start

  // Ctrl/Cmd+S deploys and Ctrl/Cmd+Enter runs, wherever the focus is (even in Monaco):
  // this listener sees the key before the editor does.
  window.addEventListener('keydown', (ev) => {
    if (!(ev.ctrlKey || ev.metaKey) || ev.altKey || !page) return;
    if ((ev.key === 's' || ev.key === 'S') && !ev.shiftKey && page.onSave) {
      ev.preventDefault();
      page.onSave();
    } else if (ev.key === 'Enter' && page.onRun) {
      ev.preventDefault();
      ev.stopPropagation();
      page.onRun();
    }
  }, true);

  function showApp() {
    document.getElementById('topbar').hidden = false;
    document.getElementById('sign-out').hidden = !token();
    route();
  }

  /** Checks the API answers (or wants a token) before showing anything of the app. */
  async function start() {
    loginShown = false;
    document.getElementById('topbar').hidden = true;
    const app = clear(document.getElementById('app'));
    app.append(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const data = await api('GET', '/v1/runtimes');
      runtimeInfo = (data && data.runtimes) || null;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      // The app can still work without the runtime list; say what happened.
      runtimeInfo = null;
      toast(errMessage(e), 'error');
    }
    showApp();
  }

  document.getElementById('sign-out').addEventListener('click', signOut);
  document.querySelector('.skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    const main = document.getElementById('app');
    const target = main.querySelector('h1') || main;
    if (target !== main) target.tabIndex = -1;
    target.focus();
  });
  window.addEventListener('hashchange', route);
  start();
})();
