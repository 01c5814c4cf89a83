// The isolation tier in the console: the configuration's select round-trips `process`
// and says why `microvm` cannot be chosen when the server says it is unavailable (or
// offers it when available); the function's header and the Runtimes page show the tiers;
// a cold start's anatomy shows a virtual machine's boot and restore parts.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useServerAndBrowser, testid, uniqueName, withPage } from './browser.mjs';

const env = useServerAndBrowser();

/** What GET /v1/runtimes says of the microvm tier on this server. */
async function microvmTier() {
  const r = await env.server.api('GET', '/v1/runtimes');
  assert.equal(r.status, 200);
  assert.equal(r.json.isolation.process.available, true);
  return r.json.isolation.microvm;
}

test('the isolation select round-trips process and shows what the server says of microvm', async () => {
  const vm = await microvmTier();
  await withPage(env.browser, 'isolation-config', async (page) => {
    const name = uniqueName('tier');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return 1\n' });
    await page.goto(`${env.server.url}/#/functions/${name}/config`);
    await page.locator(`${testid('deploy-status')}[data-state="ready"]`).waitFor({ timeout: 20_000 });
    assert.equal(await page.locator(testid('fn-isolation')).textContent(), 'Isolation: process');
    const select = page.locator(testid('config-isolation'));
    assert.equal(await select.inputValue(), 'process');
    const microvm = page.locator(testid('isolation-microvm'));
    if (vm.available) {
      assert.equal(await microvm.isDisabled(), false, 'microvm can be chosen');
      assert.equal(await select.getAttribute('title'), '');
    } else {
      assert.ok(vm.reason, 'the server says why');
      assert.equal(await microvm.isDisabled(), true, 'microvm cannot be chosen');
      assert.equal(await microvm.getAttribute('title'), vm.reason);
      assert.equal(await select.getAttribute('title'), 'microvm: ' + vm.reason);
      await page.locator(testid('panel-config')).getByText('microvm is unavailable on this server: ' + vm.reason).waitFor();
    }

    // Saving keeps the tier chosen: a new version, still process.
    await page.locator(testid('config-memory')).fill('192');
    await page.locator(testid('config-save')).click();
    await page.locator(testid('config-saved')).filter({ hasText: 'Saved as version 2.' }).waitFor();
    const fn = (await env.server.api('GET', `/v1/functions/${name}`)).json;
    assert.equal(fn.version, 2);
    assert.equal(fn.memory_mb, 192);
    assert.equal(fn.isolation, 'process');
    assert.equal(fn.spec.isolation, 'process');
    assert.equal(await select.inputValue(), 'process');
  });
});

test('the Runtimes page lists the isolation tiers as the server does', async () => {
  const vm = await microvmTier();
  await withPage(env.browser, 'isolation-runtimes', async (page) => {
    await page.goto(`${env.server.url}/#/functions`);
    await page.locator(testid('nav-runtimes')).click();
    await page.locator(testid('isolation-tiers')).waitFor();
    assert.equal(await page.locator(testid('isolation-tier-process')).textContent(), 'available');
    const shown = await page.locator(testid('isolation-tier-microvm')).textContent();
    if (vm.available) {
      assert.ok(shown.startsWith('available') && shown.includes(vm.accelerator) && shown.includes(vm.guest_kernel), shown);
      assert.equal(shown.includes(`${vm.pool} restored ahead per kind`), vm.pool > 0, shown);
    } else {
      assert.equal(shown, 'unavailable: ' + vm.reason);
    }
    assert.match(await page.locator(testid('runtime-list')).textContent(), /Python/);
  });
});

test('a cold start shows its parts, and a virtual machine\'s boot or restore within the runtime', async () => {
  await withPage(env.browser, 'isolation-anatomy', async (page) => {
    const name = uniqueName('cold');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return 1\n', idle_timeout_secs: 0 });
    const r = await env.server.api('POST', `/v1/functions/${name}/invoke`, {});
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-ignis-cold-start'), 'true');
    const id = r.headers.get('x-ignis-invocation-id');
    await page.goto(`${env.server.url}/#/functions/${name}/invocations`);
    const row = page.locator(`${testid('invocation')}[data-id="${id}"]`);
    await row.waitFor({ timeout: 10_000 });
    await row.locator(testid('invocation-toggle')).click();
    const init = await row.locator(testid('invocation-init')).textContent();
    assert.match(init, /\(first_call\): sandbox .* · runtime [\d.]+ m?s · load /, init);
    assert.doesNotMatch(init, /boot|restore/, 'a process has neither');

    // The same rendering of a virtual machine's cold starts, as the API gives them.
    const shown = await page.evaluate(async () => {
      const { coldStartAnatomy } = await import('/console/js/tab-invocations.js');
      const base = { reason: 'scale_out', init_ms: 60, sandbox_ms: 5, runtime_ms: 50, load_ms: 5 };
      return [
        coldStartAnatomy({ ...base, restore_ms: 42 }),
        coldStartAnatomy({ ...base, boot_ms: 900, runtime_ms: 950, init_ms: 960 }),
      ];
    });
    assert.deepEqual(shown, [
      '60.0 ms (scale_out): sandbox 5.0 ms · runtime 50.0 ms (restore 42.0 ms) · load 5.0 ms',
      '960 ms (scale_out): sandbox 5.0 ms · runtime 950 ms (boot 900 ms) · load 5.0 ms',
    ]);
  });
});
