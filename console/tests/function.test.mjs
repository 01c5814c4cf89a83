// One function's page: editing and deploying in Monaco, invoking, load errors marked in
// the editor, language modes, saved test events, invocation history and charts.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  editorMarkers, editorModel, screenshot, useServerAndBrowser, testid, typeCode, uniqueName, waitForMonaco, withPage,
} from './browser.mjs';

const env = useServerAndBrowser();

/** Records every data-state the deploy status shows, from now on. */
async function recordDeployStates(page) {
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid="deploy-status"]');
    window.deployStates = [el.dataset.state];
    new MutationObserver(() => {
      const s = el.dataset.state;
      if (window.deployStates[window.deployStates.length - 1] !== s) window.deployStates.push(s);
    }).observe(el, { attributes: true, attributeFilter: ['data-state'] });
  });
}

test('edit in Monaco, deploy with Ctrl+S (deploying, then ready as version 2), invoke from the panel', async () => {
  await withPage(env.browser, 'function-edit-deploy-invoke', async (page) => {
    const name = uniqueName('edit');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return {"v": 1}\n' });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await waitForMonaco(page);
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor();
    assert.equal(await page.locator(testid('fn-version')).getAttribute('data-version'), '1');
    await recordDeployStates(page);

    const code = [
      'def handler(event):',
      '    print("deployed-v2 for", event["name"])',
      '    return {"greeting": "Howdy " + event["name"]}',
    ].join('\n');
    await typeCode(page, code);
    assert.equal(await page.locator(testid('dirty')).textContent(), 'Unsaved changes');
    await page.keyboard.press('ControlOrMeta+S');

    await page.locator(`${testid('fn-version')}[data-version="2"]`).waitFor({ timeout: 10_000 });
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    const states = await page.evaluate(() => window.deployStates);
    const deploying = states.indexOf('deploying');
    assert.ok(deploying > 0 && states.indexOf('ready', deploying) > deploying, `deploying, then ready: ${JSON.stringify(states)}`);
    assert.match(await page.locator(testid('deploy-status-text')).textContent(), /Version 2 is live/);
    assert.equal(await page.locator(testid('dirty')).textContent(), '');
    assert.equal((await env.server.api('GET', `/v1/functions/${name}`)).json.code.trimEnd(), code);

    await page.locator(testid('event-editor')).fill('{"name": "Grace"}');
    await page.locator(testid('invoke')).click();
    await page.locator(testid('invoke-status')).filter({ hasText: /^200 OK$/ }).waitFor({ timeout: 20_000 });
    assert.deepEqual(JSON.parse(await page.locator(testid('invoke-body')).textContent()), { greeting: 'Howdy Grace' });
    assert.match(await page.locator(testid('invoke-start')).textContent(), /^(cold start|warm)$/);
    assert.match(await page.locator(testid('invoke-duration')).textContent(), /^Duration \d+(\.\d+)? m?s$/);
    await page.locator(testid('invoke-headers')).getByText('x-ignis-invocation-id').waitFor({ state: 'attached' });
    // The invocation's own logs come with the answer.
    await page.locator(testid('invoke-log-lines')).getByText('deployed-v2 for Grace').waitFor({ timeout: 10_000 });

    // A failing handler answers 500 with the error, shown the same way.
    await page.locator(testid('event-editor')).fill('{}');
    await page.locator(testid('invoke')).click();
    await page.locator(testid('invoke-status')).filter({ hasText: /^500 / }).waitFor({ timeout: 20_000 });
    assert.match(await page.locator(testid('invoke-body')).textContent(), /KeyError/);
  });
});

test('a syntax error shows the error state, a Monaco marker on its line and the message', async () => {
  await withPage(env.browser, 'function-syntax-error', async (page) => {
    const name = uniqueName('broken');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return 1\n' });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await waitForMonaco(page);
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor();

    await typeCode(page, ['def handler(event):', '    total = 1', '    return total +'].join('\n'));
    await page.locator(testid('deploy')).click();
    await page.locator(`${testid('deploy-status')}[data-state="error"]`).waitFor({ timeout: 20_000 });

    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.ok(fn.deploy_error, `the API reports the load error: ${JSON.stringify(fn)}`);
    assert.equal(fn.deploy_error.version, 2);
    assert.equal(fn.deploy_error.line, 3);
    const shown = await page.locator(testid('deploy-error-message')).textContent();
    assert.ok(shown.includes(fn.deploy_error.message), `the message is shown: ${shown}`);
    assert.match(shown, /line 3/);
    assert.match(await page.locator(testid('deploy-status-text')).textContent(), /Version 2 failed to load\. Version 1 is still serving\./);

    await page.waitForFunction(() => window.monaco.editor.getModelMarkers({ owner: 'ignis' }).length > 0, null, { timeout: 10_000 });
    const markers = await editorMarkers(page);
    assert.equal(markers.length, 1);
    assert.equal(markers[0].line, 3);
    assert.ok(markers[0].message.includes(fn.deploy_error.message), markers[0].message);
    assert.equal(markers[0].severity, 8, 'an error marker');
    // The marker is drawn in the editor.
    await page.locator(`${testid('code-editor')} .squiggly-error`).first().waitFor({ state: 'attached' });
    await screenshot(page, 'function-syntax-error-marked');

    // Fixing the code and deploying again clears the marker.
    await typeCode(page, ['def handler(event):', '    total = 1', '    return total + 1'].join('\n'));
    await page.locator(testid('deploy')).click();
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('fn-version')).getAttribute('data-version'), '3');
    assert.deepEqual(await editorMarkers(page), []);
    assert.ok(await page.locator(testid('deploy-error')).isHidden());
  });
});

test('JavaScript and TypeScript functions get their Monaco language', async () => {
  await withPage(env.browser, 'function-language-modes', async (page) => {
    const js = uniqueName('js');
    const ts = uniqueName('ts');
    await env.server.createFunction({ name: js, runtime: 'javascript', code: 'export function handler(event) {\n  return event;\n}\n' });
    await env.server.createFunction({ name: ts, runtime: 'typescript', code: 'export function handler(event: { a?: number }) {\n  return event;\n}\n' });

    await page.goto(`${env.server.url}/#/functions/${js}`);
    await waitForMonaco(page);
    let model = await editorModel(page);
    assert.equal(model.language, 'javascript');
    assert.match(model.value, /export function handler\(event\)/);

    await page.goto(`${env.server.url}/#/functions/${ts}`);
    await page.waitForFunction((n) => document.querySelector('h1') && document.querySelector('h1').textContent === n, ts);
    await waitForMonaco(page);
    model = await editorModel(page);
    assert.equal(model.language, 'typescript');
    assert.match(model.uri, /\.ts$/);
    assert.match(model.value, /event: \{ a\?: number \}/);

    // Creating one: choosing TypeScript switches the template and the language.
    await page.goto(`${env.server.url}/#/new`);
    await waitForMonaco(page);
    assert.equal((await editorModel(page)).language, 'python');
    await page.locator(testid('create-runtime')).selectOption('typescript');
    await page.waitForFunction(() => document.querySelector('[data-testid="code-editor"]').dataset.language === 'typescript');
    model = await editorModel(page);
    assert.equal(model.language, 'typescript');
    assert.match(model.value, /^interface Event \{/);
    await page.locator(testid('create-runtime')).selectOption('javascript');
    await page.waitForFunction(() => document.querySelector('[data-testid="code-editor"]').dataset.language === 'javascript');
    model = await editorModel(page);
    assert.equal(model.language, 'javascript');
    assert.match(model.value, /^export async function handler\(event\) \{/);
  });
});

test('saved test events, invocation history with logs, configuration and charts', async () => {
  await withPage(env.browser, 'function-events-history-charts', async (page) => {
    const name = uniqueName('hist');
    await env.server.createFunction({
      name, runtime: 'python',
      code: 'import os\n\ndef handler(event):\n    print("seen", event.get("n"), os.environ.get("MODE"))\n    return {"n": event.get("n")}\n',
    });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await waitForMonaco(page);

    // Save an event, find it again after a reload, use it, delete it.
    await page.locator(testid('event-editor')).fill('{"n": 41}');
    await page.locator(testid('event-name')).fill('forty-one');
    await page.locator(testid('event-save')).click();
    await page.locator(`${testid('event-select')} option[value="forty-one"]`).waitFor({ state: 'attached' });
    const saved = (await env.server.api('GET', `/v1/functions/${name}/test-events`)).json.test_events;
    assert.deepEqual(saved.map((e) => [e.name, e.event]), [['forty-one', { n: 41 }]]);
    await page.reload();
    await page.locator(`${testid('event-select')} option[value="forty-one"]`).waitFor({ state: 'attached' });
    await page.locator(testid('event-select')).selectOption('forty-one');
    assert.deepEqual(JSON.parse(await page.locator(testid('event-editor')).inputValue()), { n: 41 });
    await page.locator(testid('invoke')).click();
    await page.locator(testid('invoke-status')).filter({ hasText: /^200 OK$/ }).waitFor({ timeout: 20_000 });
    assert.deepEqual(JSON.parse(await page.locator(testid('invoke-body')).textContent()), { n: 41 });
    await page.locator(testid('event-delete')).click();
    await page.locator(`${testid('event-select')} option[value="forty-one"]`).waitFor({ state: 'detached' });
    assert.deepEqual((await env.server.api('GET', `/v1/functions/${name}/test-events`)).json.test_events, []);

    // The configuration tab makes a new version with the same code.
    await page.locator(testid('tab-config')).click();
    await page.locator(testid('config-memory')).fill('192');
    await page.locator(`${testid('panel-config')} ${testid('env-add')}`).click();
    await page.locator(`${testid('panel-config')} ${testid('env-row')} .env-key`).fill('MODE');
    await page.locator(`${testid('panel-config')} ${testid('env-row')} .env-value`).fill('test');
    await page.locator(testid('config-save')).click();
    await page.locator(testid('config-saved')).filter({ hasText: 'Saved as version 2.' }).waitFor();
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(fn.version, 2);
    assert.equal(fn.memory_mb, 192);
    assert.deepEqual(fn.env, { MODE: 'test' });
    assert.match(fn.code, /print\("seen"/);

    // History: the newest invocation expands to its logs.
    const r = await env.server.api('POST', `/v1/functions/${name}/invoke`, { n: 7 });
    assert.equal(r.status, 200);
    const id = r.headers.get('x-ignis-invocation-id');
    await page.locator(testid('tab-invocations')).click();
    const row = page.locator(`${testid('invocation')}[data-id="${id}"]`);
    await row.waitFor({ timeout: 10_000 });
    assert.equal(await page.locator(testid('invocation')).count(), 2);
    await row.locator(testid('invocation-toggle')).click();
    assert.equal(await row.locator(testid('invocation-toggle')).getAttribute('aria-expanded'), 'true');
    await row.locator(testid('invocation-logs')).getByText('seen 7 test').waitFor({ timeout: 10_000 });

    // Charts: two invocations in the last hour, drawn as bars.
    await page.locator(testid('tab-metrics')).click();
    await page.locator(`${testid('total-invocations')} .total-value`).filter({ hasText: /^2$/ }).waitFor({ timeout: 10_000 });
    for (const chart of ['chart-invocations', 'chart-errors', 'chart-duration', 'chart-cold-starts']) {
      await page.locator(`${testid(chart)} svg`).waitFor();
    }
    const bars = await page.locator(`${testid('chart-invocations')} rect.bar`).count();
    assert.ok(bars >= 1, 'at least one invocation bar');
    assert.ok(await page.locator(`${testid('chart-duration')} circle.dot`).count() >= 1, 'a duration point');
    assert.equal(await page.locator(`${testid('chart-errors')} rect.bar`).count(), 0, 'no error bars');
  });
});

test('without Monaco on the server, a text area with a visible notice still edits and deploys', async () => {
  await withPage(env.browser, 'function-editor-fallback', async (page) => {
    const name = uniqueName('plain');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return {"v": 1}\n' });
    // What the server answers when the monaco-editor package is not installed.
    await page.route('**/console/monaco/**', (route) => route.fulfill({
      status: 404,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'not_found', message: 'Monaco is not installed: run `make tools`' } }),
    }));
    await page.goto(`${env.server.url}/#/functions/${name}`);
    const notice = page.locator(testid('editor-fallback'));
    await notice.waitFor();
    assert.match(await notice.textContent(), /Monaco is not installed: run `make tools`.*plain text box/);
    const area = page.locator(`${testid('code-editor')} textarea`);
    assert.equal(await area.inputValue(), 'def handler(event):\n    return {"v": 1}\n');
    await area.fill('def handler(event):\n    return {"v": 2}\n');
    await page.locator(testid('deploy')).click();
    await page.locator(`${testid('fn-version')}[data-version="2"]`).waitFor();
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    await page.locator(testid('invoke')).click();
    await page.locator(testid('invoke-status')).filter({ hasText: /^200 OK$/ }).waitFor({ timeout: 20_000 });
    assert.deepEqual(JSON.parse(await page.locator(testid('invoke-body')).textContent()), { v: 2 });
  });
});

test('keyboard: Tab reaches Deploy, arrow keys move between tabs, Ctrl+M leaves the editor for the Invoke button', async () => {
  await withPage(env.browser, 'function-keyboard', async (page) => {
    const name = uniqueName('keys');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return {"keys": True}\n' });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await waitForMonaco(page);
    const focused = () => page.evaluate(() => document.activeElement && document.activeElement.dataset.testid);

    let seen = [];
    for (let i = 0; i < 20 && !seen.includes('deploy'); i++) {
      await page.keyboard.press('Tab');
      seen.push(await focused());
    }
    assert.ok(seen.includes('tab-code'), `Tab passes the tabs: ${seen}`);
    assert.ok(seen.includes('deploy'), `Tab reaches Deploy: ${seen}`);
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), 'none');

    // The selected tab is the one Tab stops on; arrows move the selection.
    await page.locator(testid('tab-code')).focus();
    await page.keyboard.press('ArrowRight');
    assert.equal(await focused(), 'tab-config');
    assert.equal(await page.locator(testid('tab-config')).getAttribute('aria-selected'), 'true');
    assert.equal(await page.locator(testid('tab-code')).getAttribute('aria-selected'), 'false');
    assert.ok(await page.locator(testid('panel-config')).isVisible());
    assert.ok(await page.locator(testid('panel-code')).isHidden());
    await page.keyboard.press('ArrowLeft');
    assert.equal(await page.locator(testid('tab-code')).getAttribute('aria-selected'), 'true');

    // Inside Monaco, Tab indents; Ctrl+M makes it move the focus on to the test panel.
    await page.locator(`${testid('code-editor')} .monaco-editor .view-lines`).click();
    await page.keyboard.press('Control+M');
    seen = [];
    for (let i = 0; i < 10 && !seen.includes('invoke'); i++) {
      await page.keyboard.press('Tab');
      seen.push(await focused());
    }
    assert.ok(seen.includes('invoke'), `Tab reaches Invoke after Ctrl+M: ${seen}`);
    await page.keyboard.press('Enter');
    await page.locator(testid('invoke-status')).filter({ hasText: /^200 OK$/ }).waitFor({ timeout: 20_000 });
  });
});
