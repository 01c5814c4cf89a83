// Drives Debian's Chromium with playwright-core (from the project's .tools folder) for the
// console tests, and holds what the tests share: screenshots, page errors, Monaco access.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before } from 'node:test';

import { REPO, startServer } from './server.mjs';

export const CHROMIUM = process.env.IGNIS_TEST_CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = path.join(REPO, 'test-artifacts', 'console');
const TOOLS = path.join(REPO, '.tools', 'node_modules');

function playwright() {
  const require = createRequire(TOOLS + path.sep);
  try {
    return require('playwright-core');
  } catch (e) {
    throw new Error(`playwright-core is not installed in ${TOOLS}: run \`make tools\` (${e.message})`);
  }
}

export async function launchBrowser() {
  const { chromium } = playwright();
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: apt-get install chromium (make test-console does it as root)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

/** Starts a server and a browser; if either fails, stops the other and says why. */
async function startServerAndBrowser(serverOptions) {
  const [s, b] = await Promise.allSettled([startServer(serverOptions), launchBrowser()]);
  if (s.status === 'rejected' || b.status === 'rejected') {
    if (s.status === 'fulfilled') await s.value.stop();
    if (b.status === 'fulfilled') await b.value.close();
    throw s.status === 'rejected' ? s.reason : b.reason;
  }
  return { server: s.value, browser: b.value };
}

/**
 * One server and one browser for the test file that calls this (at its top level):
 * started before its tests, stopped after them. Read `env.server` and `env.browser` in
 * the tests.
 */
export function useServerAndBrowser(serverOptions) {
  const env = { server: undefined, browser: undefined };
  before(async () => {
    Object.assign(env, await startServerAndBrowser(serverOptions));
  });
  after(async () => {
    await Promise.all([env.browser && env.browser.close(), env.server && env.server.stop()]);
  });
  return env;
}

/**
 * Opens a page in a fresh context (own sessionStorage) and records uncaught errors and
 * Content-Security-Policy violations, which `finish` turns into a failure.
 */
export async function openPage(browser, { width = 1280, height = 800 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  // Fail in seconds, not the default 30 s, when something never shows up.
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`uncaught error: ${(e.stack || e.message).split('\n').slice(0, 8).join('\n')}`));
  page.on('console', (m) => {
    const text = m.text();
    if (/Content Security Policy|Refused to (load|execute|apply|create|connect)/i.test(text)) problems.push(`CSP: ${text}`);
  });
  page.problems = problems;
  return page;
}

/** Runs a test body with a page, always saving a full-page screenshot named after the test. */
export async function withPage(browser, name, opts, body) {
  if (typeof opts === 'function') {
    body = opts;
    opts = {};
  }
  const page = await openPage(browser, opts);
  try {
    await body(page);
    assert.deepEqual(page.problems, [], 'the page had errors');
  } finally {
    await screenshot(page, name);
    await page.context().close();
  }
}

export async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name.replace(/[^a-z0-9-]+/gi, '-').replace(/^-|-$/g, '').toLowerCase() + '.png');
  try {
    await page.screenshot({ path: file, fullPage: true });
  } catch (e) {
    console.error(`screenshot ${file} failed: ${e.message}`);
  }
}

export const testid = (id) => `[data-testid="${id}"]`;

/**
 * Waits until the console created its Monaco editor. It waits on the page, not on
 * `window.monaco`: Monaco sets that global while its modules are still loading, and
 * calling its API then starts its services before all of them are registered.
 */
export async function waitForMonaco(page) {
  await page.locator(`${testid('code-editor')}[data-editor="monaco"] .monaco-editor`).waitFor({ timeout: 20_000 });
}

/** The model of the code editor: its text and language, read through Monaco's API. */
export async function editorModel(page) {
  return page.evaluate(() => {
    const ed = window.monaco.editor.getEditors().find((e) => e.getContainerDomNode().closest('[data-testid="code-editor"]'));
    const model = ed.getModel();
    return { value: model.getValue(), language: model.getLanguageId(), uri: model.uri.toString() };
  });
}

/** The markers the console set on the code editor's model. */
export async function editorMarkers(page) {
  return page.evaluate(() => {
    const ed = window.monaco.editor.getEditors().find((e) => e.getContainerDomNode().closest('[data-testid="code-editor"]'));
    return window.monaco.editor.getModelMarkers({ owner: 'ignis', resource: ed.getModel().uri })
      .map((m) => ({ line: m.startLineNumber, message: m.message, severity: m.severity }));
  });
}

/**
 * Replaces the code in the editor by typing it as a user would: select all, delete, then
 * each line with Enter between them. Monaco indents new lines itself, so each line is
 * typed without its leading spaces (the code must be indented the way Monaco predicts),
 * and text is inserted rather than typed key by key so bracket auto-closing stays out.
 */
export async function typeCode(page, code) {
  await page.locator(`${testid('code-editor')} .monaco-editor .view-lines`).click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  const lines = code.replace(/\n$/, '').split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (i > 0) await page.keyboard.press('Enter');
    const want = lines[i].match(/^ */)[0].length;
    // Monaco's auto-indent for this line: remove it, then type the line's own indentation.
    await page.keyboard.press('Shift+Home');
    const selected = await page.evaluate(() => {
      const ed = window.monaco.editor.getEditors().find((e) => e.getContainerDomNode().closest('[data-testid="code-editor"]'));
      return ed.getModel().getValueInRange(ed.getSelection());
    });
    if (selected.length) await page.keyboard.press('Backspace');
    const text = ' '.repeat(want) + lines[i].trimStart();
    if (text) await page.keyboard.insertText(text);
  }
  const { value } = await editorModel(page);
  assert.equal(value.replace(/\s+$/, ''), code.replace(/\s+$/, ''), 'the editor holds the typed code');
}

export function uniqueName(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
}
