// A server with a token: only the login prompt until the right token is given.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { screenshot, useServerAndBrowser, testid, uniqueName, withPage } from './browser.mjs';

const TOKEN = 'console-test-token-' + Math.random().toString(36).slice(2);

const env = useServerAndBrowser({ token: TOKEN });

test('with --token: only a login prompt, a wrong token shows the API message, the right one opens the app', async () => {
  await withPage(env.browser, 'auth-login', async (page) => {
    const name = uniqueName('secret');
    await env.server.createFunction({ name, runtime: 'python', code: 'def handler(event):\n    return {"ok": True}\n' });

    await page.goto(`${env.server.url}/#/functions`);
    await page.locator(testid('login')).waitFor();
    assert.ok(await page.locator('#topbar').isHidden(), 'the navigation is hidden');
    assert.equal(await page.locator(testid('fn-list')).count(), 0);
    assert.equal(await page.locator(testid('empty-state')).count(), 0);
    assert.equal(await page.locator('main').getByText(name).count(), 0, 'no function name leaks');

    // The API's own message for a wrong token.
    const wrong = await env.server.api('GET', '/v1/runtimes', undefined, { auth: 'not-the-token' });
    assert.equal(wrong.status, 401);
    const apiMessage = wrong.json.error.message;
    assert.ok(apiMessage);
    await page.locator(testid('login-token')).fill('not-the-token');
    await page.locator(testid('login-submit')).click();
    await page.locator(testid('login-error')).filter({ hasText: apiMessage }).waitFor();
    assert.equal(await page.locator(testid('login-error')).textContent(), apiMessage);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('ignis.token')), null, 'a wrong token is not kept');
    await screenshot(page, 'auth-wrong-token');

    await page.locator(testid('login-token')).fill(TOKEN);
    await page.keyboard.press('Enter');
    const row = page.locator(`${testid('fn-row')}[data-name="${name}"]`);
    await row.waitFor();
    assert.ok(await page.locator('#topbar').isVisible());
    assert.equal(await row.locator(testid('fn-state')).textContent(), 'ready');

    // Later calls carry the token: a function page loads and invokes.
    await row.locator(testid('fn-link')).click();
    await page.locator(testid('invoke')).click();
    await page.locator(testid('invoke-status')).filter({ hasText: /^200 OK$/ }).waitFor({ timeout: 20_000 });
    assert.deepEqual(JSON.parse(await page.locator(testid('invoke-body')).textContent()), { ok: true });

    // The token lasts for the browser session: a reload does not ask again.
    await page.reload();
    await page.locator(testid('fn-state')).filter({ hasText: /^ready$/ }).waitFor();
    assert.equal(await page.locator(testid('login')).count(), 0);

    // Signing out forgets it.
    await page.locator(testid('sign-out')).click();
    await page.locator(testid('login')).waitFor();
    assert.ok(await page.locator('#topbar').isHidden());
    assert.equal(await page.evaluate(() => sessionStorage.getItem('ignis.token')), null);
    assert.equal(await page.locator(testid('login-error')).isVisible(), false, 'no error after signing out');
  });
});
