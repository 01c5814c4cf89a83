// A function made of several files (a package): its files as a tree beside the editor,
// edited, added, renamed and deleted, then deployed as a new version; binary packages
// shown read-only; the download and a settings change that keeps the package.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';

import { editorModel, screenshot, testid, typeCode, uniqueName, useServerAndBrowser, waitForMonaco, withPage } from './browser.mjs';

const env = useServerAndBrowser();

/** The paths the tree lists, in its order. */
async function treePaths(page) {
  return page.locator(testid('tree-file')).evaluateAll((els) => els.map((e) => e.dataset.path));
}

/** Clicks a file in the tree and waits until the editor shows it. */
async function openFile(page, path) {
  await page.locator(`${testid('tree-file')}[data-path="${path}"]`).click();
  await page.locator(testid('file-current')).filter({ hasText: new RegExp(`^${path.replace(/\./g, '\\.')}$`) }).waitFor();
  await page.locator(`${testid('code-editor')}[data-path="${path}"]`).waitFor();
}

test('a package in a tree: open lib/util.py, edit it, add, rename and delete files, deploy; the new version has exactly those files', async () => {
  await withPage(env.browser, 'package-tree-edit-deploy', async (page) => {
    const name = uniqueName('tree');
    const renamed = 'VALUE = "kept across the rename"\n';
    await env.server.createFunction({
      name,
      runtime: 'python',
      handler: 'app.handler',
      files: {
        'app.py': 'from lib.util import shout\n\ndef handler(event):\n    return {"said": shout(event["name"])}\n',
        'lib/__init__.py': '',
        'lib/util.py': 'def shout(s):\n    return s.upper()\n',
        'lib/old_name.py': renamed,
        'notes/todo.txt': 'remove me\n',
      },
    });
    const oldFile = (await env.server.api('GET', `/v1/functions/${name}`)).json.files.find((f) => f.path === 'lib/old_name.py');
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    await waitForMonaco(page);

    // The tree: folders with their files, the handler's file open first.
    await page.locator(`${testid('tree-folder')}[data-path="lib"]`).waitFor();
    assert.deepEqual(await treePaths(page), ['lib/__init__.py', 'lib/old_name.py', 'lib/util.py', 'notes/todo.txt', 'app.py']);
    await page.locator(testid('file-current')).filter({ hasText: /^app\.py$/ }).waitFor();
    assert.match((await editorModel(page)).value, /def handler\(event\)/);
    assert.equal(await page.locator(testid('dirty')).textContent(), '');

    // Folders collapse and open again.
    const todo = page.locator(`${testid('tree-file')}[data-path="notes/todo.txt"]`);
    await page.locator(`${testid('tree-folder')}[data-path="notes"] > summary`).click();
    await todo.waitFor({ state: 'hidden' });
    await page.locator(`${testid('tree-folder')}[data-path="notes"] > summary`).click();
    await todo.waitFor({ state: 'visible' });

    // Edit lib/util.py.
    await openFile(page, 'lib/util.py');
    const model = await editorModel(page);
    assert.equal(model.value, 'def shout(s):\n    return s.upper()\n');
    assert.equal(model.language, 'python');
    await typeCode(page, 'from lib.extra import SUFFIX\n\ndef shout(s):\n    return s.upper() + SUFFIX');
    await page.locator(`${testid('tree-file')}[data-path="lib/util.py"][data-mark="edited"]`).waitFor();
    assert.equal(await page.locator(testid('dirty')).textContent(), 'Unsaved changes: 1 edited');

    // Add lib/extra.py: the form starts in the open file's folder and refuses a taken path.
    await page.locator(testid('file-add')).click();
    const input = page.locator(testid('file-path-input'));
    assert.equal(await input.inputValue(), 'lib/');
    await input.fill('lib/util.py');
    await page.locator(testid('file-form-ok')).click();
    await page.locator(testid('file-error')).filter({ hasText: 'lib/util.py exists already.' }).waitFor();
    await input.fill('lib/util.py/x.py');
    await page.locator(testid('file-form-ok')).click();
    await page.locator(testid('file-error')).filter({ hasText: 'lib/util.py is a file, so it cannot be a folder of lib/util.py/x.py.' }).waitFor();
    await input.fill('lib/extra.py');
    await page.locator(testid('file-form-ok')).click();
    await page.locator(`${testid('code-editor')}[data-path="lib/extra.py"]`).waitFor();
    await typeCode(page, 'SUFFIX = "!"');
    await page.locator(`${testid('tree-file')}[data-path="lib/extra.py"][data-mark="new"]`).waitFor();

    // Rename lib/old_name.py to lib/new_name.py.
    await openFile(page, 'lib/old_name.py');
    await page.locator(testid('file-rename')).click();
    await input.fill('lib/new_name.py');
    await page.locator(testid('file-form-ok')).click();
    await page.locator(`${testid('code-editor')}[data-path="lib/new_name.py"]`).waitFor();
    assert.equal((await editorModel(page)).value, renamed);

    // Delete notes/todo.txt (its folder goes with it).
    await openFile(page, 'notes/todo.txt');
    await page.locator(testid('file-delete')).click();
    await page.locator(testid('file-delete-confirm')).click();
    await page.locator(`${testid('tree-file')}[data-path="notes/todo.txt"]`).waitFor({ state: 'detached' });
    assert.equal(await page.locator(`${testid('tree-folder')}[data-path="notes"]`).count(), 0);

    const expected = ['app.py', 'lib/__init__.py', 'lib/extra.py', 'lib/new_name.py', 'lib/util.py'];
    assert.deepEqual((await treePaths(page)).sort(), expected);
    assert.equal(await page.locator(testid('dirty')).textContent(), 'Unsaved changes: 1 edited, 2 added, 2 deleted');
    await screenshot(page, 'package-tree-before-deploy');

    // Deploy: every file, with the settings, as version 2.
    await page.keyboard.press('ControlOrMeta+S');
    await page.locator(`${testid('fn-version')}[data-version="2"]`).waitFor({ timeout: 10_000 });
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('dirty')).textContent(), '');
    assert.equal(await page.locator(`${testid('tree-file')}[data-mark]`).count(), 0, 'nothing is marked after the deploy');

    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(fn.version, 2);
    assert.equal(fn.handler, 'app.handler');
    assert.deepEqual(fn.files.map((f) => f.path), expected);
    const size = (path) => fn.files.find((f) => f.path === path).size;
    assert.equal(size('lib/extra.py'), Buffer.byteLength('SUFFIX = "!"'));
    assert.equal(size('lib/util.py'), Buffer.byteLength('from lib.extra import SUFFIX\n\ndef shout(s):\n    return s.upper() + SUFFIX'));
    assert.equal(fn.files.find((f) => f.path === 'lib/new_name.py').sha256, oldFile.sha256, 'the renamed file kept its bytes');
    const r = await env.server.api('POST', `/v1/functions/${name}/invoke`, { name: 'ada' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { said: 'ADA!' });
  });
});

test('a package shows its tree, downloads as a zip, runs, and keeps its files through a settings change', async () => {
  await withPage(env.browser, 'function-package', async (page) => {
    const name = uniqueName('pkg');
    await env.server.createFunction({
      name,
      runtime: 'python',
      handler: 'app/main.handler',
      files: {
        'app/main.py': 'from app.helper import greet\n\ndef handler(event):\n    return {"hello": greet(event.get("name", "x"))}\n',
        'app/__init__.py': '',
        'app/helper.py': 'def greet(name):\n    return "hi " + name\n',
      },
    });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    await page.locator(`${testid('code-editor')}[data-path="app/main.py"]`).waitFor({ timeout: 20_000 });
    assert.deepEqual(await treePaths(page), ['app/__init__.py', 'app/helper.py', 'app/main.py']);
    assert.match(await page.locator(testid('package-info')).textContent(), /^3 files, handler app\/main\.handler\. Deploy makes a new version/);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator(testid('package-download')).click(),
    ]);
    assert.equal(download.suggestedFilename(), `${name}.zip`);
    const bytes = await readFile(await download.path());
    assert.equal(bytes.subarray(0, 2).toString('latin1'), 'PK', 'a zip archive');

    await page.locator(testid('event-editor')).fill('{"name": "Ada"}');
    await page.locator(testid('invoke')).click();
    await page.locator(testid('invoke-status')).filter({ hasText: /^200 OK$/ }).waitFor({ timeout: 20_000 });
    assert.deepEqual(JSON.parse(await page.locator(testid('invoke-body')).textContent()), { hello: 'hi Ada' });

    // A settings change keeps the package: a new version with the same files.
    const before = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    await page.locator(testid('tab-config')).click();
    await page.locator(testid('config-memory')).fill('192');
    await page.locator(testid('config-save')).click();
    await page.locator(testid('config-saved')).filter({ hasText: 'Saved as version 2.' }).waitFor();
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    const after = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(after.version, 2);
    assert.equal(after.memory_mb, 192);
    assert.equal(after.package_sha256, before.package_sha256);
    assert.deepEqual(after.files, before.files);
  });
});

/** A zip (base64) of these files, written by CPython's zipfile (values: base64 bytes). */
function zipBase64(files) {
  const script = [
    'import base64, io, json, sys, zipfile',
    'files = json.load(sys.stdin)',
    'buf = io.BytesIO()',
    'with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:',
    '    for path, data in files.items():',
    '        z.writestr(path, base64.b64decode(data))',
    'print(base64.b64encode(buf.getvalue()).decode())',
  ].join('\n');
  const input = JSON.stringify(Object.fromEntries(Object.entries(files).map(([p, b]) => [p, Buffer.from(b).toString('base64')])));
  return execFileSync('python3', ['-c', script], { input, encoding: 'utf8' }).trim();
}

test('a package with a binary file is listed but read-only, and says why', async () => {
  await withPage(env.browser, 'package-binary-read-only', async (page) => {
    const name = uniqueName('bin');
    await env.server.createFunction({
      name,
      runtime: 'python',
      handler: 'main.handler',
      zip: zipBase64({
        'main.py': 'def handler(event):\n    return {"ok": True}\n',
        'data/blob.bin': Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x81]),
      }),
    });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await page.locator(`${testid('code-editor')}[data-path="main.py"]`).waitFor({ timeout: 20_000 });
    assert.deepEqual(await treePaths(page), ['data/blob.bin', 'main.py']);
    assert.match(await page.locator(testid('files-read-only')).textContent(),
      /holds 1 binary file \(not UTF-8 text: data\/blob\.bin\)\..*read-only/);
    assert.equal(await page.locator(testid('package-info')).textContent(), '2 files, handler main.handler.');
    // Nothing to deploy, add, rename or delete; the editor does not take typing.
    for (const id of ['deploy', 'file-add', 'file-rename', 'file-delete']) {
      assert.equal(await page.locator(testid(id)).isVisible(), false, `${id} is hidden`);
    }
    await page.locator(`${testid('code-editor')} .monaco-editor .view-lines`).click();
    await page.keyboard.insertText('typed');
    assert.equal((await editorModel(page)).value, 'def handler(event):\n    return {"ok": True}\n');

    await page.locator(`${testid('tree-file')}[data-path="data/blob.bin"]`).click();
    await page.locator(testid('file-binary')).filter({ hasText: 'data/blob.bin is binary (5 bytes, not UTF-8 text)' }).waitFor();
    assert.equal(await page.locator(testid('code-editor')).isVisible(), false);
  });
});

test('the create page makes a function of several files: main.py, then a file in a folder', async () => {
  await withPage(env.browser, 'package-create', async (page) => {
    const name = uniqueName('made');
    await page.goto(`${env.server.url}/#/new`);
    await waitForMonaco(page);
    await page.locator(testid('create-name')).fill(name);
    await page.locator(testid('create-to-files')).click();
    await page.locator(`${testid('code-editor')}[data-path="main.py"]`).waitFor();
    assert.deepEqual(await treePaths(page), ['main.py']);
    assert.equal(await page.locator(testid('create-handler')).inputValue(), 'main.handler');
    await page.locator(`${testid('tree-file')}[data-path="main.py"][data-mark="new"]`).waitFor();
    assert.match((await editorModel(page)).value, /^def handler\(event\):/, 'the template became main.py');

    await page.locator(testid('file-add')).click();
    await page.locator(testid('file-path-input')).fill('lib/greet.py');
    await page.locator(testid('file-form-ok')).click();
    await page.locator(`${testid('code-editor')}[data-path="lib/greet.py"]`).waitFor();
    await typeCode(page, 'def greet(name):\n    return "made " + name');
    await openFile(page, 'main.py');
    await typeCode(page, 'from lib.greet import greet\n\ndef handler(event):\n    return {"msg": greet(event["name"])}');
    await screenshot(page, 'package-create-filled');

    await page.locator(testid('create-submit')).click();
    await page.waitForURL(new RegExp(`#/functions/${name}$`));
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    await page.locator(`${testid('tree-file')}[data-path="lib/greet.py"]`).waitFor();

    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(fn.handler, 'main.handler');
    assert.deepEqual(fn.files.map((f) => f.path), ['lib/greet.py', 'main.py']);
    const r = await env.server.api('POST', `/v1/functions/${name}/invoke`, { name: 'Ada' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { msg: 'made Ada' });
  });
});

test('a one-file function becomes a package: its code as main.py, a file added, deployed with the handler main.handler', async () => {
  await withPage(env.browser, 'package-convert', async (page) => {
    const name = uniqueName('conv');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return {"v": 1}\n' });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await waitForMonaco(page);
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor();

    await page.locator(testid('to-files')).click();
    await page.locator(`${testid('code-editor')}[data-path="main.py"]`).waitFor();
    assert.equal((await editorModel(page)).value, 'def handler(event):\n    return {"v": 1}\n');
    assert.equal(await page.locator(testid('dirty')).textContent(), 'Unsaved changes: 1 added');
    await page.locator(testid('file-add')).click();
    await page.locator(testid('file-path-input')).fill('helper.py');
    await page.locator(testid('file-form-ok')).click();
    await page.locator(`${testid('code-editor')}[data-path="helper.py"]`).waitFor();
    await typeCode(page, 'V = 2');
    await openFile(page, 'main.py');
    await typeCode(page, 'from helper import V\n\ndef handler(event):\n    return {"v": V}');
    await page.locator(testid('deploy')).click();

    await page.locator(`${testid('fn-version')}[data-version="2"]`).waitFor({ timeout: 10_000 });
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    await page.locator(testid('package-info')).filter({ hasText: /^2 files, handler main\.handler\./ }).waitFor();
    assert.equal(await page.locator(testid('dirty')).textContent(), '');
    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(fn.handler, 'main.handler');
    assert.ok(fn.package_sha256, 'the function is a package now');
    assert.deepEqual(fn.files.map((f) => f.path), ['helper.py', 'main.py']);
    const r = await env.server.api('POST', `/v1/functions/${name}/invoke`, {});
    assert.deepEqual(r.json, { v: 2 });
  });
});

test('a requirements.txt naming a package that does not exist: the build fails, the function is in error and the page shows the installer\'s log', async () => {
  await withPage(env.browser, 'package-build-failed', async (page) => {
    const name = uniqueName('deps');
    const missing = 'ignis-no-such-package-' + Date.now().toString(36);
    // Not waiting for the deploy: the page opens while the version builds.
    const r = await env.server.api('POST', '/v1/functions', {
      name,
      runtime: 'python',
      handler: 'main.handler',
      files: { 'main.py': 'def handler(event):\n    return 1\n', 'requirements.txt': `${missing}==1.0\n` },
    });
    assert.equal(r.status, 201, r.text);
    const created = r.json;
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await page.locator(testid('build-log')).waitFor({ timeout: 20_000 });
    await page.locator(`${testid('fn-state')}`).filter({ hasText: /^error$/ }).waitFor({ timeout: 120_000 });
    const build = (await env.server.api('GET', `/v1/functions/${name}/versions/${created.version}/build`)).json;
    assert.equal(build.status, 'failed', JSON.stringify(build));
    assert.equal(build.installer, 'uv');

    await page.locator(`${testid('build-status')}[data-state="error"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('build-log')).isVisible(), true);
    const log = await page.locator(testid('build-log-text')).textContent();
    assert.ok(log.includes(missing), `the installer's message names the package: ${log}`);
    assert.equal(log.trim(), build.log.trim(), 'the page shows the whole log');
    assert.ok(build.error, 'the build says why it failed');
    assert.equal(await page.locator(testid('build-error')).textContent(), build.error);
    assert.match(await page.locator(testid('deploy-status-text')).textContent(), new RegExp(`Version ${created.version} failed to build\\.`));
  });
});

test('a requirements.txt added in the console whose build fails: version 1 keeps serving and the page shows version 2\'s build log', async () => {
  await withPage(env.browser, 'package-update-build-failed', async (page) => {
    const name = uniqueName('upd');
    await env.server.createFunction({ name, runtime: 'python', handler: 'main.handler', files: { 'main.py': 'def handler(event):\n    return {"v": 1}\n' } });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await page.locator(`${testid('code-editor')}[data-path="main.py"]`).waitFor({ timeout: 20_000 });
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor();
    assert.equal(await page.locator(testid('build-log')).isVisible(), false, 'nothing was built for version 1');

    const missing = 'ignis-missing-' + Date.now().toString(36);
    await page.locator(testid('file-add')).click();
    await page.locator(testid('file-path-input')).fill('requirements.txt');
    await page.locator(testid('file-form-ok')).click();
    await page.locator(`${testid('code-editor')}[data-path="requirements.txt"]`).waitFor();
    await page.locator(`${testid('code-editor')} .monaco-editor .view-lines`).click();
    await page.keyboard.insertText(`${missing}==1.0\n`);
    await page.locator(testid('deploy')).click();

    await page.locator(`${testid('build-status')}[data-state="error"]`).waitFor({ timeout: 120_000 });
    assert.match(await page.locator(testid('build-title')).textContent(), /^Build of version 2$/);
    assert.ok((await page.locator(testid('build-log-text')).textContent()).includes(missing));
    await page.locator(testid('deploy-status-text')).filter({ hasText: 'Version 2 failed to build. Version 1 is still serving.' }).waitFor({ timeout: 20_000 });
    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(fn.version, 2);
    assert.equal(fn.active_version, 1);
    const r = await env.server.api('POST', `/v1/functions/${name}/invoke`, {});
    assert.deepEqual(r.json, { v: 1 });
  });
});
