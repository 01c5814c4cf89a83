// @ts-check
// The create page: name, runtime, limits, handler, environment and code (starting from the
// runtime's template), as one file or as a package of several files; the API's error goes
// to the field it names.

import { api, ApiError, errMessage } from './api.js';
import { enc, h, setText, uid } from './dom.js';
import { codeEditor } from './editor.js';
import { filesEditor } from './files-editor.js';
import { numberOrText } from './format.js';
import { RUNTIME_FILES, runtimeOptions, TEMPLATES } from './runtimes.js';
import { envEditor, errorBox, field, pageHeader, toast } from './widgets.js';

/**
 * @param {import('./page.js').Page} pg
 * @param {HTMLElement} app
 */
export function createPage(pg, app) {
  document.title = 'Create function · Ignis';
  const err = errorBox('create-error');
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', testid: 'create-name', placeholder: 'hello' });
  const runtime = h('select', { name: 'runtime', testid: 'create-runtime' });
  runtimeOptions(runtime, 'python');
  const memory = h('input', { type: 'number', min: '128', max: '3072', step: '1', value: '128', testid: 'create-memory', inputmode: 'numeric' });
  const timeout = h('input', { type: 'number', min: '1', max: '300', step: '1', value: '30', testid: 'create-timeout', inputmode: 'numeric' });
  const handler = h('input', { type: 'text', value: 'handler', spellcheck: 'false', autocapitalize: 'off', testid: 'create-handler' });
  const env = envEditor({});
  let editorBox = h('div', {});
  const resetBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'create-reset-template' }, 'Reset to the template');
  const filesBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'create-to-files' }, 'Use several files');
  const codeHelp = h('p', { class: 'muted small' }, 'One file. With several files (a package), the handler names its file: path/module.function.');
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
      field('Handler', handler, 'The function the runtime calls (path/module.function with several files).')),
    env.el,
    h('div', { class: 'editor-head' }, h('h2', { class: 'sub' }, 'Code'), h('div', { class: 'editor-actions' }, filesBtn, resetBtn)),
    codeHelp,
    editorBox);
  app.append(
    pageHeader('Create a function', h('a', { class: 'btn', href: '#/functions' }, 'Cancel'), submit),
    err.el, form);

  /** @type {import('./editor.js').Editor | null} */
  let editor = null;
  /** The files, once the user chose several. @type {import('./files-editor.js').FilesEditor | null} */
  let pkg = null;
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
  // Several files: the code so far becomes the runtime's conventional first file, and the
  // handler names it (main.handler).
  filesBtn.addEventListener('click', () => {
    if (!editor) return;
    const first = RUNTIME_FILES[runtime.value];
    const text = editor.getValue();
    editor.dispose();
    editor = null;
    pkg = filesEditor(pg, { runtime: runtime.value, files: [{ path: first, text, size: new TextEncoder().encode(text).length }], unsaved: true, label: 'Function code' });
    const box = h('div', {}, pkg.el);
    editorBox.replaceWith(box);
    editorBox = box;
    const entry = first.replace(/\.[^.]+$/, '');
    if (!handler.value.trim() || handler.value.trim() === 'handler') handler.value = entry + '.handler';
    filesBtn.hidden = true;
    resetBtn.hidden = true;
    setText(codeHelp, `Several files: the handler (${handler.value}) names the file and the function the runtime calls.`);
  });
  resetBtn.addEventListener('click', () => {
    if (!editor) return;
    template = TEMPLATES[runtime.value];
    editor.setRuntime(runtime.value, template);
    editor.focus();
  });
  /** @type {Record<string, HTMLInputElement>} */
  const inputs = { name, memory_mb: memory, timeout_secs: timeout, handler };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!editor && !pkg) return;
    err.hide();
    for (const el of Object.values(inputs)) el.removeAttribute('aria-invalid');
    let body;
    try {
      body = {
        name: name.value.trim(),
        runtime: runtime.value,
        ...(pkg ? { files: pkg.texts() } : { code: editor ? editor.getValue() : '' }),
        handler: handler.value.trim() || 'handler',
        memory_mb: numberOrText(memory.value),
        timeout_secs: numberOrText(timeout.value),
        env: env.value(),
      };
    } catch (e) {
      err.show(errMessage(e));
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
      const bad = e instanceof ApiError ? inputs[e.detail.field] : undefined;
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
