// The playground: run code against an event without creating a function.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { editorMarkers, editorModel, useServerAndBrowser, testid, typeCode, waitForMonaco, withPage } from './browser.mjs';

const env = useServerAndBrowser();

test('the playground runs code and shows the response and its logs; a load error marks its line', async () => {
  await withPage(env.browser, 'playground-run', async (page) => {
    await page.goto(`${env.server.url}/#/playground`);
    await waitForMonaco(page);
    assert.match((await editorModel(page)).value, /^def handler\(event\):/, 'it starts from the Python template');

    // The template as it is.
    await page.locator(testid('pg-run')).click();
    await page.locator(testid('pg-status')).filter({ hasText: /^200 OK$/ }).waitFor({ timeout: 30_000 });
    assert.deepEqual(JSON.parse(await page.locator(testid('pg-body')).textContent()), { message: 'Hello, Ada!' });

    // Code that prints, run with Ctrl+Enter from the editor.
    await typeCode(page, [
      'def handler(event):',
      '    print("playground-log", event["name"])',
      '    return {"statusCode": 201, "headers": {"x-demo": "yes"}, "body": "made " + event["name"]}',
    ].join('\n'));
    await page.locator(testid('pg-event')).fill('{"name": "Lin"}');
    await page.locator(`${testid('code-editor')} .monaco-editor .view-lines`).click();
    await page.keyboard.press('ControlOrMeta+Enter');
    await page.locator(testid('pg-status')).filter({ hasText: /^201 Created$/ }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator(testid('pg-body')).textContent(), 'made Lin');
    await page.locator(testid('pg-headers')).getByText('x-demo').waitFor({ state: 'attached' });
    assert.match(await page.locator(testid('pg-duration')).textContent(), /^Duration \d+(\.\d+)? m?s$/);
    await page.locator(testid('pg-log-lines')).getByText('playground-log Lin').waitFor();
    assert.equal((await editorModel(page)).value.split('\n').length, 3, 'Ctrl+Enter ran the code instead of adding a line');

    // A load error: its line is marked and the message shown.
    await typeCode(page, ['def handler(event):', '    x = 1', '    return x +'].join('\n'));
    await page.locator(testid('pg-run')).click();
    await page.locator(testid('pg-load-error')).waitFor({ timeout: 30_000 });
    assert.match(await page.locator(testid('pg-load-error')).textContent(), /SyntaxError.*line 3/);
    await page.waitForFunction(() => window.monaco.editor.getModelMarkers({ owner: 'ignis' }).length > 0, null, { timeout: 10_000 });
    const markers = await editorMarkers(page);
    assert.deepEqual(markers.map((m) => m.line), [3]);
    assert.ok(await page.locator(testid('pg-result')).isHidden(), 'no response for code that did not load');

    // Nothing was created.
    assert.deepEqual((await env.server.api('GET', '/v1/functions')).json.functions, []);
  });
});
