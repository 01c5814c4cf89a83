// @ts-check
// A package's files as a tree (folders collapsible) beside the code editor: open a file by
// clicking it, edit it, add a file (a path with folders), rename or delete the open one.
// Files changed since the last load or deploy are marked; binary files (not UTF-8) are
// listed but never editable.

import { h, setText } from './dom.js';
import { codeEditor } from './editor.js';
import { errorBox } from './widgets.js';

/** @typedef {import('./zip.js').PackageEntry} PackageEntry */

/**
 * @typedef {object} FilesEditorOptions
 * @property {string} runtime
 * @property {PackageEntry[]} files
 * @property {string} [open] the file to open first (else the first text file)
 * @property {string} [readOnly] why the files cannot be edited (shown); editable without it
 * @property {string} [label] the editor's accessible name
 * @property {boolean} [unsaved] the files are not deployed yet (all marked new)
 */

/**
 * @typedef {object} FilesEditor
 * @property {HTMLElement} el
 * @property {() => Record<string, string>} texts every file's text, by path
 * @property {() => string} changes what changed since the last load or deploy ('' for nothing)
 * @property {() => void} markSaved takes the files as they are as deployed
 * @property {(files: PackageEntry[]) => void} load replaces every file (a newer version)
 * @property {(fn: () => void) => void} onChange called when a file's text or the list changes
 * @property {() => string | null} current the open file
 */

/**
 * Why `path` cannot be a new file among `paths` (the server checks again), or ''.
 * @param {string} path
 * @param {Iterable<string>} paths the other files
 * @returns {string}
 */
export function pathProblem(path, paths) {
  if (!path) return 'Give the file a path, such as lib/util.py.';
  if (path.startsWith('/')) return `${path} is absolute; paths in a package are relative to its root.`;
  if (path.includes('\\')) return `${path} holds a backslash; use "/" between folders.`;
  if (/[\u0000-\u001f\u007f]/.test(path)) return `${path} holds a control character.`;
  const parts = path.split('/');
  if (parts.some((p) => p === '')) return `${path} has an empty part ("//" or a trailing "/").`;
  if (parts.some((p) => p === '.' || p === '..')) return `${path} holds "." or ".."; paths may not leave or name their folder.`;
  for (const other of paths) {
    if (other === path) return `${path} exists already.`;
    if (other.startsWith(path + '/')) return `${path} is a folder (it holds ${other}).`;
    if (path.startsWith(other + '/')) return `${other} is a file, so it cannot be a folder of ${path}.`;
  }
  return '';
}

/**
 * @param {import('./page.js').Page} pg
 * @param {FilesEditorOptions} opts
 * @returns {FilesEditor}
 */
export function filesEditor(pg, opts) {
  const readOnly = opts.readOnly || '';
  /** The files as shown (text null: binary). @type {Map<string, PackageEntry>} */
  let files = new Map();
  /** The files as last loaded or deployed. @type {Map<string, string | null>} */
  let saved = new Map();
  /** @type {string | null} */
  let current = null;
  /** Folders the user closed. @type {Set<string>} */
  const collapsed = new Set();
  /** @type {Array<() => void>} */
  const listeners = [];
  /** @type {import('./editor.js').Editor | null} */
  let editor = null;

  const tree = h('div', { class: 'file-tree', testid: 'file-tree', role: 'navigation', 'aria-label': 'Files' });
  const addBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'file-add', hidden: !!readOnly }, 'New file');
  const renameBtn = h('button', { type: 'button', class: 'btn btn-small', testid: 'file-rename', hidden: !!readOnly }, 'Rename');
  const deleteBtn = h('button', { type: 'button', class: 'btn btn-small btn-quiet', testid: 'file-delete', hidden: !!readOnly }, 'Delete');
  const pathEl = h('span', { class: 'mono file-path', testid: 'file-current' });
  const form = h('div', { class: 'file-form', testid: 'file-form', hidden: true });
  const formErr = errorBox('file-error');
  const binaryNote = h('p', { class: 'notice', role: 'note', testid: 'file-binary', hidden: true });
  const emptyNote = h('p', { class: 'muted', testid: 'file-none', hidden: true }, 'No file is open. Add a file to start.');
  const editorBox = h('div', {});
  const el = h('div', { class: 'files-layout', testid: 'files-editor' },
    h('div', { class: 'files-side' },
      h('div', { class: 'files-side-head' }, h('span', { class: 'small muted' }, 'Files'), addBtn),
      tree),
    h('div', { class: 'files-main' },
      readOnly ? h('p', { class: 'notice', role: 'note', testid: 'files-read-only' }, readOnly) : null,
      h('div', { class: 'file-head' }, pathEl, h('span', { class: 'file-actions' }, renameBtn, deleteBtn)),
      form, formErr.el, binaryNote, emptyNote, editorBox));

  const changed = () => {
    render();
    listeners.forEach((fn) => fn());
  };

  /** @param {PackageEntry[]} entries */
  const setFiles = (entries) => {
    files = new Map(entries.map((f) => [f.path, Object.assign({}, f)]));
    saved = new Map(entries.map((f) => [f.path, f.text]));
  };

  /**
   * What a file's mark says: new, edited or nothing.
   * @param {string} path
   */
  const markOf = (path) => {
    if (!saved.has(path)) return 'new';
    const f = files.get(path);
    return f && f.text !== saved.get(path) ? 'edited' : '';
  };

  /** @param {string | null} path */
  const open = (path) => {
    hideForm();
    const f = path == null ? undefined : files.get(path);
    current = f ? f.path : null;
    binaryNote.hidden = true;
    emptyNote.hidden = current != null;
    editorBox.hidden = current == null;
    setText(pathEl, current || '');
    renameBtn.disabled = deleteBtn.disabled = current == null;
    if (f && f.text == null) {
      editorBox.hidden = true;
      binaryNote.hidden = false;
      setText(binaryNote, `${f.path} is binary (${f.size} bytes, not UTF-8 text): it is kept as it is and cannot be edited here.`);
    } else if (f && editor) {
      editor.openFile(f.path, f.text || '');
    }
    render();
  };

  /** Builds the tree from the paths: folders first, then files, each sorted. */
  function render() {
    /** @typedef {{folders: Map<string, Folder>, files: string[]}} Folder */
    /** @type {Folder} */
    const root = { folders: new Map(), files: [] };
    for (const path of [...files.keys()].sort()) {
      const parts = path.split('/');
      let at = root;
      for (const part of parts.slice(0, -1)) {
        let next = at.folders.get(part);
        if (!next) {
          next = { folders: new Map(), files: [] };
          at.folders.set(part, next);
        }
        at = next;
      }
      at.files.push(path);
    }
    /**
     * @param {Folder} folder
     * @param {string} prefix
     * @returns {HTMLUListElement}
     */
    const list = (folder, prefix) => h('ul', { class: 'tree-list' },
      ...[...folder.folders.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, sub]) => {
        const path = prefix + name;
        const details = h('details', { open: !collapsed.has(path), testid: 'tree-folder', 'data-path': path },
          h('summary', {}, name + '/'), list(sub, path + '/'));
        details.addEventListener('toggle', () => {
          if (details.open) collapsed.delete(path);
          else collapsed.add(path);
        });
        return h('li', {}, details);
      }),
      ...folder.files.map((path) => {
        const f = /** @type {PackageEntry} */ (files.get(path));
        const mark = markOf(path);
        const btn = h('button', {
          type: 'button', class: 'tree-file' + (path === current ? ' is-current' : ''), testid: 'tree-file',
          'data-path': path, 'data-mark': mark || null, 'aria-current': path === current ? 'true' : null,
          title: `${path} · ${f.size} bytes`,
        }, path.slice(prefix.length),
        f.text == null ? h('span', { class: 'tree-tag' }, ' binary') : null,
        mark ? h('span', { class: 'tree-mark', title: mark === 'new' ? 'New, not deployed' : 'Edited, not deployed' },
          mark === 'new' ? ' (new)' : ' ●', h('span', { class: 'visually-hidden' }, mark === 'edited' ? ' edited' : '')) : null);
        btn.addEventListener('click', () => open(path));
        return h('li', {}, btn);
      }));
    // Keep the keyboard focus on the file it was on across the rebuild.
    const focused = document.activeElement instanceof HTMLElement && tree.contains(document.activeElement)
      ? document.activeElement.dataset.path : undefined;
    tree.replaceChildren(list(root, ''));
    if (focused) {
      const again = [...tree.querySelectorAll('[data-path]')].find((e) => e instanceof HTMLElement && e.dataset.path === focused);
      if (again instanceof HTMLElement) (again.querySelector('summary') || again).focus();
    }
  }

  function hideForm() {
    form.hidden = true;
    form.replaceChildren();
    formErr.hide();
  }

  /**
   * An inline form: a label, a text input and buttons; `submit` answers a problem or ''.
   * @param {string} label
   * @param {string} value
   * @param {string} action
   * @param {(value: string) => string} submit
   */
  function showForm(label, value, action, submit) {
    hideForm();
    const input = h('input', { type: 'text', value, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', testid: 'file-path-input', 'aria-label': label });
    const ok = h('button', { type: 'submit', class: 'btn btn-small btn-primary', testid: 'file-form-ok' }, action);
    const cancel = h('button', { type: 'button', class: 'btn btn-small' }, 'Cancel');
    const f = h('form', { class: 'file-form-row', novalidate: true }, h('label', { class: 'small' }, label, ' ', input), ok, cancel);
    f.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const problem = submit(input.value.trim());
      if (problem) {
        formErr.show(problem);
        input.setAttribute('aria-invalid', 'true');
        input.focus();
      }
    });
    cancel.addEventListener('click', hideForm);
    form.append(f);
    form.hidden = false;
    input.focus();
    input.select();
  }

  addBtn.addEventListener('click', () => {
    const folder = current && current.includes('/') ? current.slice(0, current.lastIndexOf('/') + 1) : '';
    showForm('Path of the new file', folder, 'Add', (path) => {
      const problem = pathProblem(path, files.keys());
      if (problem) return problem;
      files.set(path, { path, text: '', size: 0 });
      open(path);
      changed();
      if (editor) editor.focus();
      return '';
    });
  });
  renameBtn.addEventListener('click', () => {
    const from = current;
    if (from == null) return;
    showForm(`New path of ${from}`, from, 'Rename', (path) => {
      if (path === from) {
        hideForm();
        return '';
      }
      const problem = pathProblem(path, [...files.keys()].filter((p) => p !== from));
      if (problem) return problem;
      const f = /** @type {PackageEntry} */ (files.get(from));
      files.delete(from);
      files.set(path, Object.assign({}, f, { path }));
      if (editor) editor.closeFile(from);
      open(path);
      changed();
      return '';
    });
  });
  deleteBtn.addEventListener('click', () => {
    const path = current;
    if (path == null) return;
    hideForm();
    if (files.size === 1) {
      formErr.show('A package needs at least one file: add another before deleting this one.');
      return;
    }
    const yes = h('button', { type: 'button', class: 'btn btn-small btn-danger', testid: 'file-delete-confirm' }, `Delete ${path}`);
    const no = h('button', { type: 'button', class: 'btn btn-small' }, 'Cancel');
    form.append(h('div', { class: 'file-form-row', role: 'group', 'aria-label': 'Confirm deletion' },
      h('span', { class: 'small' }, `Delete ${path}? It goes with the next deploy.`), yes, no));
    form.hidden = false;
    no.addEventListener('click', hideForm);
    yes.addEventListener('click', () => {
      files.delete(path);
      if (editor) editor.closeFile(path);
      open(firstText());
      changed();
    });
    yes.focus();
  });

  /** The first file the editor can hold, else the first file, else null. */
  const firstText = () => {
    const paths = [...files.keys()].sort();
    return paths.find((p) => /** @type {PackageEntry} */ (files.get(p)).text != null) || paths[0] || null;
  };

  setFiles(opts.files);
  if (opts.unsaved) saved = new Map();
  open(null);
  codeEditor(pg, editorBox, { runtime: opts.runtime, value: '', label: opts.label || 'File', readOnly: !!readOnly }).then((ed) => {
    editor = ed;
    ed.onChange(() => {
      const f = current == null ? undefined : files.get(current);
      if (!f || f.text == null || readOnly) return;
      const text = ed.getValue();
      if (text === f.text) return;
      const before = markOf(f.path);
      f.text = text;
      f.size = new TextEncoder().encode(text).length;
      if (markOf(f.path) !== before) render();
      listeners.forEach((fn) => fn());
    });
    open(opts.open && files.has(opts.open) ? opts.open : firstText());
  });

  return {
    el,
    texts() {
      /** @type {Record<string, string>} */
      const out = {};
      for (const f of files.values()) {
        if (f.text == null) throw new Error(`${f.path} is binary: the console cannot send it back as text.`);
        out[f.path] = f.text;
      }
      return out;
    },
    changes() {
      let edited = 0;
      let added = 0;
      for (const path of files.keys()) {
        const mark = markOf(path);
        if (mark === 'new') added += 1;
        else if (mark === 'edited') edited += 1;
      }
      const deleted = [...saved.keys()].filter((p) => !files.has(p)).length;
      const parts = [];
      if (edited) parts.push(`${edited} edited`);
      if (added) parts.push(`${added} added`);
      if (deleted) parts.push(`${deleted} deleted`);
      return parts.join(', ');
    },
    markSaved() {
      saved = new Map([...files.values()].map((f) => [f.path, f.text]));
      render();
    },
    load(entries) {
      const keep = current;
      for (const path of files.keys()) if (editor) editor.closeFile(path);
      setFiles(entries);
      open(keep && files.has(keep) ? keep : firstText());
      changed();
    },
    onChange: (fn) => listeners.push(fn),
    current: () => current,
  };
}
