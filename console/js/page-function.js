// @ts-check
// One function's page: its header (state, versions, instances, delete), the newest
// version's deploy status, and the tabs (code with the test panel, configuration,
// invocations, live logs, metrics). It polls the function, faster while a deploy is on.

import { api, apiRaw, errMessage, errorFrom, isStatus, isUnauthorized } from './api.js';
import { clear, enc, h, setText } from './dom.js';
import { buildLog } from './build-log.js';
import { codeEditor } from './editor.js';
import { filesEditor } from './files-editor.js';
import { fmtInstances, loadErrorText } from './format.js';
import { poll } from './page.js';
import { RUNTIME_FILES, RUNTIME_LABELS } from './runtimes.js';
import { specBody } from './spec.js';
import { configPanel } from './tab-config.js';
import { invocationHistory } from './tab-invocations.js';
import { invokePanel } from './tab-invoke.js';
import { logTail } from './tab-logs.js';
import { metricsPanel } from './tab-metrics.js';
import { errorBox, tabs, toast } from './widgets.js';
import { unzip } from './zip.js';

/** @typedef {import('./spec.js').FunctionView} FunctionView */
/** @typedef {import('./page.js').Page} Page */
/** @typedef {import('./zip.js').PackageEntry} PackageEntry */

const TABS = [
  { id: 'code', label: 'Code' },
  { id: 'config', label: 'Configuration' },
  { id: 'invocations', label: 'Invocations' },
  { id: 'logs', label: 'Live logs' },
  { id: 'metrics', label: 'Metrics' },
];

/**
 * Where the newest version stands: building (installing its dependencies), deploying,
 * ready or error (with a message).
 * @param {FunctionView} fn
 * @returns {'building' | 'deploying' | 'ready' | 'error'}
 */
function deployStatus(fn) {
  const de = fn.deploy_error;
  if (de && de.version === fn.version) return 'error';
  if (fn.state === 'building') return 'building';
  if (fn.state === 'creating' || fn.state === 'deploying') return 'deploying';
  if (fn.state === 'error') return 'error';
  if (fn.active_version === fn.version) return 'ready';
  // Still serving an older version without a recorded failure: the reason says why.
  return fn.state_reason ? 'error' : 'deploying';
}

/**
 * @param {Page} pg
 * @param {HTMLElement} app
 * @param {string} name
 * @param {string | undefined} initialTab
 */
export function functionPage(pg, app, name, initialTab) {
  document.title = `${name} · Ignis`;
  const err = errorBox('fn-error');
  const loading = h('p', { class: 'muted' }, `Loading ${name}…`);
  app.append(h('p', { class: 'crumbs' }, h('a', { href: '#/functions' }, 'Functions'), ' / ', name), loading, err.el);

  /** @type {ReturnType<typeof buildFunctionPage> | null} */
  let built = null;
  const load = async () => {
    try {
      /** @type {FunctionView} */
      const fn = await api('GET', '/v1/functions/' + enc(name));
      if (!pg.alive) return;
      err.hide();
      if (!built) {
        loading.remove();
        built = buildFunctionPage(pg, app, fn, initialTab);
        // After a navigation the link that led here is gone: put keyboard users on the
        // page's heading.
        if (pg.navigated && (document.activeElement === document.body || !document.contains(document.activeElement))) {
          const h1 = app.querySelector('h1');
          if (h1) {
            h1.tabIndex = -1;
            h1.focus({ preventScroll: true });
          }
        }
      } else {
        built.update(fn);
      }
    } catch (e) {
      if (!pg.alive || isUnauthorized(e)) return;
      loading.remove();
      err.show(errMessage(e));
      if (isStatus(e, 404) && built) built.gone();
    }
  };
  const poller = poll(pg, load, () => (built && built.busy() ? 400 : 2000));
  pg.refreshFunction = () => poller.now();
}

/**
 * @param {Page} pg
 * @param {HTMLElement} app
 * @param {FunctionView} fn0
 * @param {string | undefined} initialTab
 */
function buildFunctionPage(pg, app, fn0, initialTab) {
  const name = fn0.name;
  let fn = fn0;
  const path = '/v1/functions/' + enc(name);

  // Header: name, runtime, state, versions, instances, delete.
  const stateBadge = h('span', { class: 'state', testid: 'fn-state' });
  const versionEl = h('span', { class: 'meta-item', testid: 'fn-version' });
  const instancesEl = h('span', { class: 'meta-item', testid: 'fn-instances' });
  const isolationEl = h('span', { class: 'meta-item', testid: 'fn-isolation' });
  const deleteBtn = h('button', { type: 'button', class: 'btn btn-danger', testid: 'fn-delete' }, 'Delete');
  const confirmBox = h('div', { class: 'confirm card', hidden: true, role: 'group', 'aria-label': 'Confirm deletion' });
  const head = h('div', { class: 'page-head' },
    h('div', {},
      h('h1', {}, name),
      h('p', { class: 'meta' },
        h('span', { class: 'runtime-badge', testid: 'fn-runtime' }, RUNTIME_LABELS[fn.runtime] || fn.runtime),
        stateBadge, versionEl, isolationEl, instancesEl)),
    h('div', { class: 'page-actions' }, deleteBtn));

  // The newest version's deploy: a status line, and the load error outside the editor.
  const deployText = h('span', { testid: 'deploy-status-text' });
  const deployErr = h('div', { class: 'deploy-detail', testid: 'deploy-error', hidden: true });
  const gotoLine = h('button', { type: 'button', class: 'btn btn-small', testid: 'deploy-error-goto', hidden: true }, 'Show the line');
  const deployErrText = h('span', { class: 'mono', testid: 'deploy-error-message' });
  deployErr.append(deployErrText, ' ', gotoLine);
  const deployEl = h('div', { class: 'deploy-status', testid: 'deploy-status', role: 'status' }, deployText, deployErr);

  /** @type {Record<string, () => void>} */
  const onShow = {};
  /** @type {Record<string, () => void>} */
  const onHide = {};
  const t = tabs(TABS, (id) => {
    history.replaceState(null, '', '#/functions/' + enc(name) + (id === 'code' ? '' : '/' + id));
    for (const [k, fnShow] of Object.entries(onShow)) if (k === id) fnShow();
    for (const [k, fnHide] of Object.entries(onHide)) if (k !== id) fnHide();
  });
  // The newest version's build: live while it runs, kept in view when it failed.
  /** Versions whose build failed. @type {Set<number>} */
  const failedBuilds = new Set();
  const build = buildLog(pg, name, (b) => {
    if (b.status !== 'failed' || failedBuilds.has(b.version)) return;
    failedBuilds.add(b.version);
    showDeploy();
  });
  app.append(head, confirmBox, deployEl, build.el, t.list, ...t.panels);

  // --- Code tab: editor + test panel.
  const saveBtn = h('button', { type: 'button', class: 'btn btn-primary', testid: 'deploy' }, 'Deploy');
  const dirtyEl = h('span', { class: 'muted small', testid: 'dirty' });
  const saveErr = errorBox('save-error');
  let editorBox = h('div', {});
  const invoke = invokePanel(pg, name);
  // A package of several files is edited as a tree of files beside the editor.
  const isPackage = fn.package_sha256 != null;
  const packageInfo = h('span', { testid: 'package-info' });
  const toFilesBtn = h('button', { type: 'button', class: 'btn', testid: 'to-files', hidden: isPackage }, 'Use several files');
  if (isPackage) {
    saveBtn.hidden = true;
    editorBox.append(h('p', { class: 'muted', testid: 'package-loading' }, 'Loading the package’s files…'));
  }
  const heading = h('h2', { class: 'sub' }, isPackage ? 'Package' : RUNTIME_FILES[fn.runtime] || 'Code');
  const codeNote = isPackage
    ? h('p', { class: 'muted small', testid: 'package' }, packageInfo, ' ', downloadButton(fn, path))
    : h('p', { class: 'muted small' }, 'Deploy makes a new version (Ctrl+S or ⌘S).');
  const layout = h('div', { class: 'code-layout' + (isPackage ? ' code-layout-package' : '') },
    h('div', { class: 'code-main' },
      h('div', { class: 'editor-head' }, heading, h('div', { class: 'editor-actions' }, dirtyEl, toFilesBtn, saveBtn)),
      codeNote,
      saveErr.el,
      editorBox),
    invoke.el);
  t.panel('code').append(layout);

  /** @type {import('./editor.js').Editor | null} */
  let editor = null;
  let savedCode = fn.code || '';
  let saving = false;
  /** A version we deployed and wait for. @type {number | null} */
  let watchVersion = null;
  /** @type {number | null} */
  let markedVersion = null;
  /** The package's files in the tree editor. @type {import('./files-editor.js').FilesEditor | null} */
  let pkg = null;
  /** The package the tree editor holds (as loaded or deployed). */
  let pkgSha = fn.package_sha256 || null;
  let pkgLoading = false;
  const updateDirty = () => {
    if (pkg) {
      const changes = pkg.changes();
      setText(dirtyEl, changes ? 'Unsaved changes: ' + changes : '');
      return;
    }
    const dirty = editor && editor.getValue() !== savedCode;
    setText(dirtyEl, dirty ? 'Unsaved changes' : '');
  };
  const showPackageInfo = () => {
    const n = (fn.files || []).length;
    const deployNote = pkg && !saveBtn.hidden ? ' Deploy makes a new version with every file (Ctrl+S or ⌘S).' : '';
    setText(packageInfo, `${n} file${n === 1 ? '' : 's'}, handler ${fn.handler || ''}.${deployNote}`);
  };
  /** Reads the newest package (its zip) into the tree editor. */
  const loadPackage = async () => {
    if (pkgLoading) return;
    pkgLoading = true;
    const sha = fn.package_sha256 || null;
    try {
      const entries = await fetchPackage(path);
      if (!pg.alive) return;
      pkgSha = sha;
      if (pkg) {
        pkg.load(entries);
        return;
      }
      const binary = entries.filter((f) => f.text == null).map((f) => f.path);
      const readOnly = binary.length
        ? `This package holds ${binary.length} binary file${binary.length === 1 ? '' : 's'} (not UTF-8 text: ${binary.slice(0, 5).join(', ')}${binary.length > 5 ? ', …' : ''}). `
          + 'The console sends files back as text only, so it shows this package read-only: deploy changes with a zip through the API.'
        : '';
      pkg = filesEditor(pg, { runtime: fn.runtime, files: entries, open: handlerFile(fn, entries), readOnly, label: `Code of ${name}` });
      pkg.onChange(updateDirty);
      clear(editorBox).append(pkg.el);
      saveBtn.hidden = !!readOnly;
      showPackageInfo();
      updateDirty();
    } catch (e) {
      if (!pg.alive || isUnauthorized(e)) return;
      if (pkg) toast('Cannot load the newest files: ' + errMessage(e), 'error');
      else clear(editorBox).append(h('p', { class: 'error-box', role: 'alert', testid: 'package-error' }, 'Cannot load the package’s files: ' + errMessage(e)));
    } finally {
      pkgLoading = false;
    }
  };
  // A one-file function becomes a package: its code is the runtime's conventional first
  // file (main.py, index.js, index.ts), to which files are added; the next deploy sends
  // them all, the handler then naming that file (main.handler).
  toFilesBtn.addEventListener('click', () => {
    if (!editor || saving) return;
    const first = RUNTIME_FILES[fn.runtime] || 'main.py';
    const text = editor.getValue();
    editor.dispose();
    editor = null;
    pkg = filesEditor(pg, { runtime: fn.runtime, files: [{ path: first, text, size: new TextEncoder().encode(text).length }], unsaved: true, label: `Code of ${name}` });
    pkg.onChange(updateDirty);
    const box = h('div', {}, pkg.el);
    editorBox.replaceWith(box);
    editorBox = box;
    layout.classList.add('code-layout-package');
    toFilesBtn.hidden = true;
    setText(heading, 'Package');
    setText(codeNote, `Deploy sends every file as a new version; the handler becomes ${first.replace(/\.[^.]+$/, '')}.${fn.handler || 'handler'}.`);
    updateDirty();
  });
  if (isPackage) {
    showPackageInfo();
    loadPackage();
  } else {
    codeEditor(pg, editorBox, { runtime: fn.runtime, value: savedCode, label: `Code of ${name}` }).then((ed) => {
      editor = ed;
      ed.onChange(updateDirty);
      showDeploy();
    });
  }

  const deployPackage = async () => {
    if (saving || !pkg || saveBtn.hidden) return;
    const files = pkg;
    saving = true;
    saveBtn.disabled = true;
    saveErr.hide();
    /** @type {Record<string, unknown>} */
    const changes = { files: files.texts() };
    // A one-file function's handler names a function; a package's names its file too.
    if (fn.package_sha256 == null) {
      const first = RUNTIME_FILES[fn.runtime] || 'main.py';
      changes.handler = first.replace(/\.[^.]+$/, '') + '.' + (fn.handler || 'handler');
    }
    try {
      const updated = await api('PUT', path, specBody(fn, changes));
      if (!pg.alive) return;
      files.markSaved();
      pkgSha = updated.package_sha256 || null;
      watchVersion = updated.version;
      fn = Object.assign({}, fn, updated);
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

  const deploy = async () => {
    if (pkg) return deployPackage();
    if (saving || !editor) return;
    const ed = editor;
    saving = true;
    saveBtn.disabled = true;
    saveErr.hide();
    const code = ed.getValue();
    try {
      const updated = await api('PUT', path, specBody(fn, { code }));
      if (!pg.alive) return;
      savedCode = code;
      watchVersion = updated.version;
      markedVersion = null;
      ed.clearMarks();
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
    if (!t.panel('code').hidden) invoke.run();
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
  t.panel('config').append(config.el);

  // --- Invocations, logs, metrics.
  const invocations = invocationHistory(pg, name);
  t.panel('invocations').append(invocations.el);
  onShow.invocations = invocations.show;
  onHide.invocations = invocations.hide;
  invoke.onInvoked = () => invocations.refresh();

  const tail = logTail(pg, name);
  t.panel('logs').append(tail.el);
  onShow.logs = tail.start;

  const metrics = metricsPanel(pg, name);
  t.panel('metrics').append(metrics.el);
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
    if (status === 'building') {
      setText(deployText, `Building version ${fn.version} (installing its dependencies)…`);
    } else if (status === 'deploying') {
      setText(deployText, `Deploying version ${fn.version}…`);
    } else if (status === 'ready') {
      setText(deployText, `Version ${fn.version} is live.`);
    } else {
      const serving = fn.active_version != null && fn.active_version !== fn.version
        ? ` Version ${fn.active_version} is still serving.` : '';
      const what = failedBuilds.has(fn.version) ? 'failed to build' : 'failed to load';
      setText(deployText, `Version ${fn.version} ${what}.${serving}`);
    }
    if (status === 'error') {
      const message = de ? loadErrorText(de) : fn.state_reason || 'The code failed to load.';
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
    if (watchVersion === fn.version && status !== 'deploying' && status !== 'building') {
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
    setText(isolationEl, 'Isolation: ' + (fn.isolation || 'process'));
    if (fn.instances) setText(instancesEl, 'Instances: ' + fmtInstances(fn.instances));
    showDeploy();
    const status = deployStatus(fn);
    build.update(fn, status === 'error' && !(fn.deploy_error && fn.deploy_error.version === fn.version));
    config.update(fn);
    if (fn.package_sha256 != null) {
      showPackageInfo();
      // A function converted to files here shows the package's line once deployed.
      if (!codeNote.contains(packageInfo)) codeNote.replaceChildren(packageInfo, ' ', downloadButton(fn, path));
    }
  }

  render();
  t.select(TABS.some((tab) => tab.id === initialTab) ? String(initialTab) : 'code', false);

  return {
    /** @param {FunctionView} next */
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
      // A newer package deployed elsewhere replaces the files unless the user changed some.
      if (pkg && next.package_sha256 && next.package_sha256 !== pkgSha && !pkg.changes() && !saving) loadPackage();
      updateDirty();
    },
    busy: () => saving || deployStatus(fn) === 'deploying' || deployStatus(fn) === 'building' || watchVersion != null,
    gone() {
      saveBtn.disabled = true;
    },
  };
}

/**
 * A button that downloads the function's code as a zip.
 * @param {FunctionView} fn
 * @param {string} path the function's API path
 * @returns {HTMLElement}
 */
function downloadButton(fn, path) {
  // A button, not a link: the download needs the token, which only fetch can send.
  const download = h('button', { type: 'button', class: 'btn btn-small', testid: 'package-download' }, 'Download as zip');
  download.addEventListener('click', async () => {
    try {
      const resp = await apiRaw('GET', path + '/code', undefined, { accept: 'application/zip' });
      if (!resp.ok) throw await errorFrom(resp);
      const url = URL.createObjectURL(await resp.blob());
      h('a', { href: url, download: fn.name + '.zip' }).click();
      URL.revokeObjectURL(url);
    } catch (e) {
      if (!isUnauthorized(e)) toast(errMessage(e), 'error');
    }
  });
  return download;
}

/**
 * The files of the function's newest package, read from its zip.
 * @param {string} path the function's API path
 * @returns {Promise<PackageEntry[]>}
 */
async function fetchPackage(path) {
  const resp = await apiRaw('GET', path + '/code', undefined, { accept: 'application/zip' });
  if (!resp.ok) throw await errorFrom(resp);
  return unzip(await resp.arrayBuffer());
}

/**
 * The file a Lambda-style handler (`lib/app.handler`) names, when the package has it.
 * @param {FunctionView} fn
 * @param {PackageEntry[]} entries
 * @returns {string | undefined}
 */
function handlerFile(fn, entries) {
  const handler = fn.handler || '';
  const dot = handler.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const module = handler.slice(0, dot);
  const found = entries.find((f) => f.path.replace(/\.[^./]+$/, '') === module || f.path === module + '/__init__.py');
  return found && found.path;
}
