// A streamed answer in the invoke panel: its first part shows while the handler still runs,
// then the whole body once it ends.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { screenshot, testid, typeCode, uniqueName, useServerAndBrowser, waitForMonaco, withPage } from './browser.mjs';

const env = useServerAndBrowser();

// Streams "first;", then waits until a second call on the same instance releases it.
const CODE = [
  'import threading',
  '',
  'gate = threading.Event()',
  '',
  'def handler(event, context):',
  '    if event.get("release"):',
  '        gate.set()',
  '        return {"released": True}',
  '    return body()',
  '',
  'def body():',
  '    yield {"statusCode": 200, "headers": {"content-type": "text/plain"}}',
  '    yield "first;"',
  '    gate.wait()',
  '    yield "second"',
].join('\n');

test('the invoke panel shows a streamed body as it arrives', async () => {
  await withPage(env.browser, 'invoke-streamed', async (page) => {
    const name = uniqueName('stream');
    await env.server.createFunction({ name, runtime: 'python', code: CODE, concurrency: 2, max_instances: 1, timeout_secs: 30 });
    await page.goto(`${env.server.url}/#/functions/${name}`);
    await page.locator(testid('event-editor')).fill('{}');
    await page.locator(testid('invoke')).click();
    // The first part, while the handler waits (it cannot end before the release below).
    await page.locator(`${testid('invoke-result')}[data-streaming="true"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('invoke-body')).textContent(), 'first;');
    await screenshot(page, 'invoke-streaming');
    const released = await env.server.api('POST', `/v1/functions/${name}/invoke`, { release: true });
    assert.equal(released.status, 200, released.text);
    await page.locator(`${testid('invoke-result')}[data-streaming="false"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('invoke-body')).textContent(), 'first;second');
    assert.match(await page.locator(testid('invoke-status')).textContent(), /^200/);
  });
});

test('the playground shows a streamed body as it arrives, then the run', async () => {
  await withPage(env.browser, 'playground-streamed', async (page) => {
    await page.goto(`${env.server.url}/#/playground`);
    await waitForMonaco(page);
    // The handler pauses between its two parts: the page must show the first on its own.
    await typeCode(page, [
      'import time',
      '',
      'def handler(event, context):',
      '    yield {"statusCode": 202, "headers": {"content-type": "text/plain"}}',
      '    yield "first;"',
      '    time.sleep(3)',
      '    yield "second"',
    ].join('\n'));
    await page.locator(testid('pg-run')).click();
    await page.locator(`${testid('pg-result')}[data-streaming="true"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('pg-body')).textContent(), 'first;');
    await page.locator(`${testid('pg-result')}[data-streaming="false"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('pg-body')).textContent(), 'first;second');
    assert.match(await page.locator(testid('pg-status')).textContent(), /^202/);
    await page.locator(testid('pg-log-lines')).waitFor({ state: 'attached' });
  });
});
