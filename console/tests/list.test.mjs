// The functions list: the empty state, creating from a template, live states, and the
// narrow layout with keyboard focus.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { editorModel, screenshot, useServerAndBrowser, testid, uniqueName, waitForMonaco, withPage } from './browser.mjs';

const env = useServerAndBrowser();

// Runs first in this file: the server is fresh, so the list is empty.
test('empty state, then a function created from the Python template becomes ready in the list', async () => {
  await withPage(env.browser, 'list-empty-then-create', async (page) => {
    await page.goto(env.server.url + '/');
    const empty = page.locator(testid('empty-state'));
    await empty.waitFor({ timeout: 10_000 });
    await screenshot(page, 'list-empty-state');
    // It explains the other ways to create a function, with this server's address.
    assert.match(await page.locator(testid('empty-curl')).textContent(), new RegExp(`${env.server.url}/v1/functions`));
    assert.match(await page.locator(testid('empty-cli')).textContent(), /ignis fn create/);

    await page.locator(testid('create-first')).click();
    await page.waitForURL(/#\/new$/);
    await waitForMonaco(page);
    const model = await editorModel(page);
    assert.equal(model.language, 'python');
    assert.match(model.value, /^def handler\(event\):/);
    assert.match(model.value, /"body": f'\{\{"message": "Hello, \{name\}!"\}\}'/);

    const name = uniqueName('hello');
    await page.locator(testid('create-name')).fill(name);
    await page.locator(testid('create-memory')).fill('256');
    await page.locator(testid('env-add')).click();
    await page.locator(`${testid('env-row')} .env-key`).fill('GREETING');
    await page.locator(`${testid('env-row')} .env-value`).fill('hi there');
    await page.locator(testid('create-submit')).click();
    await page.waitForURL(new RegExp(`#/functions/${name}$`));

    await page.locator(testid('nav-functions')).click();
    const row = page.locator(`${testid('fn-row')}[data-name="${name}"]`);
    await row.locator(testid('fn-state')).filter({ hasText: /^ready$/ }).waitFor({ timeout: 20_000 });
    assert.equal(await row.locator(testid('fn-runtime')).textContent(), 'Python');
    assert.equal(await row.locator(testid('fn-version')).textContent(), 'v1');
    assert.ok(await page.locator(testid('empty-state')).isHidden(), 'the empty state is gone');

    // What was created is the template with the form's settings.
    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(fn.code, model.value);
    assert.equal(fn.memory_mb, 256);
    assert.deepEqual(fn.env, { GREETING: 'hi there' });
  });
});

test('the list follows new functions, versions and states without reloading', async () => {
  await withPage(env.browser, 'list-live-state', async (page) => {
    const name = uniqueName('live');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return 1\n' });
    await page.goto(env.server.url + '/#/functions');
    const state = page.locator(`${testid('fn-row')}[data-name="${name}"] ${testid('fn-state')}`);
    await state.filter({ hasText: /^ready$/ }).waitFor();
    await page.evaluate(() => {
      window.notReloaded = true;
    });
    // A new version shows up in the row.
    const put = await env.server.api('PUT', `/v1/functions/${name}`, { runtime: 'python', code: 'def handler(event):\n    return 2\n' });
    assert.equal(put.status, 200);
    await page.locator(`${testid('fn-row')}[data-name="${name}"] ${testid('fn-version')}`).filter({ hasText: /^v2$/ }).waitFor({ timeout: 10_000 });
    // A broken first version: a function that never loaded is in error.
    const broken = uniqueName('broken');
    const r = await env.server.api('POST', '/v1/functions?wait=true', { name: broken, runtime: 'python', code: 'def handler(event)\n    return 1\n' });
    assert.equal(r.status, 201);
    const brokenState = page.locator(`${testid('fn-row')}[data-name="${broken}"] ${testid('fn-state')}`);
    await brokenState.filter({ hasText: /^error$/ }).waitFor({ timeout: 10_000 });
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  });
});

test('at 400 px the list stacks without horizontal scroll and Tab reaches the primary button with a visible focus ring', async () => {
  await withPage(env.browser, 'list-narrow-keyboard', { width: 400, height: 800 }, async (page) => {
    await env.server.createFunction({ name: uniqueName('a-rather-long-function-name-for-narrow-screens'), runtime: 'javascript', code: 'export function handler(e) { return e }\n' });
    await page.goto(env.server.url + '/#/functions');
    await page.locator(testid('fn-row')).first().waitFor();
    const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    assert.ok(widths.scroll <= widths.inner, `no horizontal scroll: scrollWidth ${widths.scroll} > innerWidth ${widths.inner}`);
    await screenshot(page, 'list-narrow');

    // Tab from the top of the page until the primary button has the focus.
    let reached = false;
    for (let i = 0; i < 20 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement && document.activeElement.dataset.testid === 'create-function');
    }
    assert.ok(reached, 'Tab reaches the "Create function" button');
    const ring = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement);
      return { style: s.outlineStyle, width: parseFloat(s.outlineWidth), visible: document.activeElement.matches(':focus-visible') };
    });
    assert.ok(ring.visible, 'the focused button matches :focus-visible');
    assert.notEqual(ring.style, 'none', 'the focus outline is drawn');
    assert.ok(ring.width >= 2, `the focus outline is at least 2px wide (${ring.width})`);

    // Enter follows it; the create page fits too, and its primary button comes before the editor.
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/new$/);
    await waitForMonaco(page);
    const w2 = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    assert.ok(w2.scroll <= w2.inner, `create page: scrollWidth ${w2.scroll} > innerWidth ${w2.inner}`);
    reached = false;
    for (let i = 0; i < 25 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement && document.activeElement.dataset.testid === 'create-submit');
    }
    assert.ok(reached, 'Tab reaches the "Create function" submit button');
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), 'none');
  });
});
