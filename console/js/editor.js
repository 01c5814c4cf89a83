// @ts-check
// The code editor: Monaco (served by Ignis from the monaco-editor package, loaded once with
// its AMD loader) when the server has it, else a plain text area that says why.

import { errorFrom } from './api.js';
import { clear, h } from './dom.js';
import { RUNTIME_FILES } from './runtimes.js';

const MONACO_BASE = '/console/monaco/vs';

/**
 * Monaco's namespace. Its types are not part of this check (Monaco is not built into the
 * console), so it is used as `any`.
 * @typedef {any} Monaco
 */

/** @type {Promise<Monaco | null> | null} */
let monacoPromise = null;
let monacoProblem = '';

/** The AMD loader Monaco's loader.js installs, and the namespace it defines. */
const amd = /** @type {{require: any, monaco: Monaco}} */ (/** @type {unknown} */ (window));

/**
 * Loads Monaco once; answers the monaco namespace, or null (and says why) without it.
 * @returns {Promise<Monaco | null>}
 */
function loadMonaco() {
  if (monacoPromise) return monacoPromise;
  monacoPromise = new Promise((resolve) => {
    /** @param {string} why */
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
        amd.require.config({ paths: { vs: MONACO_BASE } });
        amd.require(
          ['vs/editor/editor.main'],
          () => {
            configureMonaco(amd.monaco);
            resolve(amd.monaco);
          },
          (/** @type {any} */ err) => fail('The code editor (Monaco) failed to start: ' + (err && err.message ? err.message : err)),
        );
      } catch (e) {
        fail('The code editor (Monaco) failed to start: ' + (e instanceof Error ? e.message : String(e)));
      }
    };
    document.head.append(script);
  });
  return monacoPromise;
}

/** @param {Monaco} monaco */
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

/**
 * @typedef {object} Editor
 * @property {'monaco' | 'textarea'} kind
 * @property {() => string} getValue
 * @property {(value: string) => void} setValue
 * @property {(runtime: string, value: string | null) => void} setRuntime switches the
 *   language, with new code or (null) the code it has
 * @property {(path: string, value: string) => void} openFile shows a package's file (its
 *   language from its name; its undo history kept while it stays open)
 * @property {(path: string) => void} closeFile forgets a file openFile showed
 * @property {(line: number, message: string) => void} markLine
 * @property {() => void} clearMarks
 * @property {(line: number) => void} revealLine
 * @property {() => void} focus
 * @property {(fn: () => void) => void} onChange
 * @property {() => void} dispose
 */

/**
 * @typedef {object} EditorOptions
 * @property {string} runtime
 * @property {string} [value]
 * @property {string} [label]
 * @property {string} [testid]
 * @property {boolean} [readOnly]
 */

/**
 * A code editor in `container`: Monaco when the server has it, else a text area with a
 * visible notice. It goes when the page goes.
 * @param {import('./page.js').Page} pg
 * @param {HTMLElement} container
 * @param {EditorOptions} opts
 * @returns {Promise<Editor>}
 */
export async function codeEditor(pg, container, opts) {
  container.classList.add('editor');
  container.dataset.testid = opts.testid || 'code-editor';
  container.dataset.language = opts.runtime;
  clear(container).append(h('p', { class: 'muted editor-loading' }, 'Loading the editor…'));
  const monaco = await loadMonaco();
  clear(container);
  let ed;
  if (monaco && pg.alive) ed = monacoEditor(monaco, container, opts);
  else ed = textareaEditor(container, opts);
  // Disposed once, whether a page replaced the editor or the page went.
  const dispose = ed.dispose;
  let disposed = false;
  ed.dispose = () => {
    if (disposed) return;
    disposed = true;
    dispose();
  };
  pg.cleanups.push(() => ed.dispose());
  return ed;
}

let modelCounter = 0;

/**
 * @param {Monaco} monaco
 * @param {HTMLElement} container
 * @param {EditorOptions} opts
 * @returns {Editor}
 */
function monacoEditor(monaco, container, opts) {
  const host = h('div', { class: 'editor-host' });
  container.append(host);
  /** @type {Array<() => void>} */
  const listeners = [];
  let runtime = opts.runtime;
  /**
   * @param {string} value
   * @param {string} rt
   */
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
  /** A package's files, each with its own model. @type {Map<string, any>} */
  const fileModels = new Map();
  container.dataset.editor = 'monaco';
  container.append(h('p', { class: 'editor-hint muted' },
    'Tab indents inside the editor; press Ctrl+M (Ctrl+Shift+M on a Mac) to make Tab move the focus instead.'));
  /** @param {number} line */
  const clampLine = (line) => Math.max(1, Math.min(Number(line) || 1, model.getLineCount()));
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
      if (![...fileModels.values()].includes(old)) old.dispose();
    },
    openFile(path, value) {
      let m = fileModels.get(path);
      if (!m) {
        modelCounter += 1;
        // No language given: Monaco picks it from the file's extension.
        m = monaco.editor.createModel(value, undefined, monaco.Uri.file(`/ignis/${modelCounter}/${path}`));
        m.updateOptions({ tabSize: path.endsWith('.py') ? 4 : 2, insertSpaces: true });
        fileModels.set(path, m);
      } else if (m.getValue() !== value) {
        m.setValue(value);
      }
      const old = model;
      model = m;
      container.dataset.language = m.getLanguageId();
      container.dataset.path = path;
      editor.setModel(m);
      if (old !== m && ![...fileModels.values()].includes(old)) old.dispose();
    },
    closeFile(path) {
      const m = fileModels.get(path);
      if (!m) return;
      fileModels.delete(path);
      if (m === model) {
        model = newModel('', runtime);
        editor.setModel(model);
        delete container.dataset.path;
      }
      m.dispose();
    },
    markLine(line, message) {
      const ln = clampLine(line);
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
      const ln = clampLine(line);
      editor.revealLineInCenter(ln);
      editor.setPosition({ lineNumber: ln, column: model.getLineFirstNonWhitespaceColumn(ln) || 1 });
      editor.focus();
    },
    focus: () => editor.focus(),
    onChange: (fn) => listeners.push(fn),
    dispose() {
      editor.dispose();
      if (![...fileModels.values()].includes(model)) model.dispose();
      for (const m of fileModels.values()) m.dispose();
    },
  };
}

/**
 * @param {HTMLElement} container
 * @param {EditorOptions} opts
 * @returns {Editor}
 */
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
  /** @type {Array<() => void>} */
  const listeners = [];
  area.addEventListener('input', () => listeners.forEach((fn) => fn()));
  /** @param {number} line */
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
    openFile(path, value) {
      container.dataset.path = path;
      area.value = value;
    },
    closeFile(path) {
      if (container.dataset.path !== path) return;
      delete container.dataset.path;
      area.value = '';
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
