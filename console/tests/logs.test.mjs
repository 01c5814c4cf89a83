// The live log tail: lines printed by an invocation appear without reloading.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useServerAndBrowser, testid, uniqueName, withPage } from './browser.mjs';

const env = useServerAndBrowser();

test('the live log tail shows each new line as it happens, without reloading', async () => {
  await withPage(env.browser, 'logs-live-tail', async (page) => {
    const name = uniqueName('tail');
    await env.server.createFunction({
      name, runtime: 'python',
      code: 'import sys\n\ndef handler(event):\n    print("marker", event["marker"])\n    print("to stderr", event["marker"], file=sys.stderr)\n    return {}\n',
    });
    // An invocation before the tail opens: the stream starts with the latest lines.
    const earlier = `early-${Date.now()}`;
    assert.equal((await env.server.api('POST', `/v1/functions/${name}/invoke`, { marker: earlier })).status, 200);

    await page.goto(`${env.server.url}/#/functions/${name}`);
    await page.locator(testid('tab-logs')).click();
    await page.locator(`${testid('tail-status')}[data-state="live"]`).waitFor({ timeout: 10_000 });
    await page.locator(testid('log-tail')).getByText(`marker ${earlier}`).waitFor({ timeout: 5_000 });
    await page.evaluate(() => {
      window.notReloaded = true;
    });

    for (let round = 0; round < 2; round++) {
      const marker = `m${round}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
      const r = await env.server.api('POST', `/v1/functions/${name}/invoke`, { marker });
      assert.equal(r.status, 200);
      // Pushed by the server as the invocation ends (no polling); how fast is the
      // benchmark's business, not a timed test's: the wait only bounds a hang.
      await page.locator(testid('log-tail')).getByText(`marker ${marker}`).waitFor({ timeout: 10_000 });
      const stderrLine = page.locator(`${testid('log-tail')} .log-stderr`).filter({ hasText: `to stderr ${marker}` });
      await stderrLine.waitFor({ timeout: 10_000 });
    }
    assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
    assert.equal(await page.locator(`${testid('tail-status')}`).getAttribute('data-state'), 'live');
  });
});
